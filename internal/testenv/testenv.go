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
	"strconv"
	"strings"
	"testing"
	"time"
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

// BenchAt is Bench for a figure measured earlier: load is the 1-minute
// load average taken when its measurement ended (the highest of them when
// the figure comes from several), not when the line is printed.
func BenchAt(b testing.TB, name string, value float64, unit string, load float64) {
	b.Helper()
	fmt.Printf("bench %s %.4g %s load1=%.2f\n", name, value, unit, load)
}

// Load1Value is Load1 as a number (-1 when unreadable).
func Load1Value() float64 {
	v, err := strconv.ParseFloat(Load1(), 64)
	if err != nil {
		return -1
	}
	return v
}

// SettleLoad waits, up to limit, for the 1-minute load average to fall to
// at most target, so one measurement's own load (a benchmark's writers and
// readers count while they wait for the disk) is not carried into the
// next. It logs how long it waited and where the load stood.
func SettleLoad(b testing.TB, target float64, limit time.Duration) {
	b.Helper()
	t0 := time.Now()
	for Load1Value() > target && time.Since(t0) < limit {
		time.Sleep(2 * time.Second)
	}
	b.Logf("load1 %s after %v settling (target %.2f)", Load1(), time.Since(t0).Round(time.Second), target)
}

// Load1 is the 1-minute load average, as /proc/loadavg writes it.
func Load1() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(raw)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}
