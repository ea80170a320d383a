// Package testenv starts the real counterparts tests run against: loop
// devices, a private dbus-daemon, etcd, swtpm. Each helper skips the test,
// loudly, when the host cannot provide the part (not root, tool missing),
// and registers its cleanup with t.Cleanup.
//
// Only tests import this package, and its own cmd/mktestdata (make
// testdata, the demo), which uses CreateDisk.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireRoot skips t unless the process runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (loop devices, cgroups); run the tests as root")
	}
}

// RequireTool skips t unless every named command is on PATH.
func RequireTool(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("SKIP: %s not installed (make deps installs it as root)", n)
		}
	}
}

// Bench prints one machine-readable figure, `bench <name> <value> <unit>
// load1=<L>`, which scripts/bench.sh collects. L is the host's 1-minute
// load average when the line is printed (from /proc/loadavg; "?" when
// unreadable): figures from a loaded host are not comparable.
func Bench(b testing.TB, name string, value float64, unit string) {
	b.Helper()
	fmt.Printf("bench %s %.4g %s load1=%s\n", name, value, unit, Load1())
}

// Load1 is the 1-minute load average, as /proc/loadavg writes it.
func Load1() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(raw)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}
