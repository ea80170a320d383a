package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestAdaptiveOnLoopDevice (root, real cgroups and PSI): a Limiter on a
// loop device written to without pause, its limit driven by Adaptive
// from the real io.pressure files. A competing reader (dd, direct 4 KiB
// reads of the same disk, in a cgroup v2 group of its own as a service
// would be) makes the limit fall below the ceiling; once the reader
// stops, the limit climbs again. Only directions are asserted: how fast
// depends on the host's load.
func TestAdaptiveOnLoopDevice(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "dd")
	dev := memLoop(t, 64<<20)
	l := newOrSkipV2(t, Config{Name: fmt.Sprintf("ue-test-adaptive-%d", os.Getpid()), Device: dev, WriteBPS: 1 << 30})
	defer l.Close()
	psi, err := NewPSI("/proc", "/sys/fs/cgroup")
	if err != nil {
		t.Skipf("SKIP: %v", err)
	}
	t.Logf("unified hierarchy %s, engine in %s", psi.Root, psi.Self)
	const floor, ceiling = 1 << 20, 256 << 20
	a, err := NewAdaptive(AdaptiveConfig{Floor: floor, Ceiling: ceiling, Target: 0.2}, psi, l, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	limitFile := filepath.Join(l.Dir(), "blkio.throttle.write_bps_device")
	if _, err := os.Stat(limitFile); err != nil {
		limitFile = filepath.Join(l.Dir(), "io.max")
	}

	// The update: O_DIRECT writes of 1 MiB over the first half, forever.
	f, err := os.OpenFile(dev, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := l.WriterAt(f)
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		buf := alignedBuf(1 << 20)
		for off := int64(0); ; off = (off + 1<<20) % (32 << 20) {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			if _, err := w.WriteAt(buf, off); err != nil {
				writerDone <- err
				return
			}
		}
	}()
	defer func() {
		close(stop)
		if err := <-writerDone; err != nil {
			t.Errorf("writer: %v", err)
		}
	}()

	// step runs the controller every 250 ms until cond holds for the
	// rate, or fails after a minute.
	step := func(what string, cond func(uint64) bool) uint64 {
		t.Helper()
		a.Step() // a fresh baseline
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			time.Sleep(250 * time.Millisecond)
			r, err := a.Step()
			if err != nil {
				t.Fatal(err)
			}
			if cond(r) {
				t.Logf("%s: %.1f MiB/s at pressure %.2f", what, float64(r)/(1<<20), a.Pressure())
				return r
			}
		}
		t.Fatalf("%s: the limit stayed at %.1f MiB/s (pressure %.2f)", what, float64(a.Rate())/(1<<20), a.Pressure())
		return 0
	}

	// The competing reader, in a v2 group beside the engine's.
	group := filepath.Join(psi.Root, path.Dir(psi.Self), fmt.Sprintf("ue-test-reader-%d", os.Getpid()))
	if err := os.Mkdir(group, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(group); err != nil {
			t.Errorf("removing %s: %v", group, err)
		}
	})
	reader := exec.Command("sh", "-c", "echo $$ > "+filepath.Join(group, "cgroup.procs")+
		" && while :; do dd if="+dev+" of=/dev/null bs=4k skip=8192 count=4096 iflag=direct status=none || exit 1; done")
	reader.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	readerDone := false
	stopReader := func() {
		if readerDone {
			return
		}
		readerDone = true
		_ = syscall.Kill(-reader.Process.Pid, syscall.SIGKILL)
		_ = reader.Wait()
	}
	defer stopReader()

	low := step("reader running", func(r uint64) bool { return r < ceiling/4 })
	if got := readFile(t, limitFile); !strings.Contains(got, strconv.FormatUint(low, 10)) {
		t.Errorf("%s = %q, want the controller's %d", limitFile, got, low)
	}
	stopReader()
	high := step("reader stopped", func(r uint64) bool { return r > low })
	if high <= low || high < floor || l.WriteBPS() != high {
		t.Errorf("after the reader stopped: %d, before %d, limiter %d", high, low, l.WriteBPS())
	}
}
