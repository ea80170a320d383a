// Package testenv starts the real counterparts tests run against: loop
// devices, a private dbus-daemon, etcd, swtpm. Each helper skips the test,
// loudly, when the host cannot provide the part (not root, tool missing),
// and registers its cleanup with t.Cleanup.
//
// Only tests import this package.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
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

// Bench prints one machine-readable figure, `bench <name> <value> <unit>`,
// which scripts/bench.sh collects.
func Bench(b testing.TB, name string, value float64, unit string) {
	b.Helper()
	fmt.Printf("bench %s %.4g %s\n", name, value, unit)
}
