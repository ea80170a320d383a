package cgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/containerd/cgroups/v3"
	"golang.org/x/sys/unix"
)

// alignedBuf returns n bytes starting on a 4096-byte boundary, as O_DIRECT
// needs.
func alignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	off := (4096 - int(uintptr(unsafe.Pointer(&b[0]))&4095)) & 4095
	return b[off : off+n]
}

// writeAll writes total bytes in chunk-sized WriteAt calls and returns the
// rate in bytes per second.
func writeAll(w interface {
	WriteAt([]byte, int64) (int, error)
}, total, chunk int) (float64, error) {
	buf := alignedBuf(chunk)
	for i := range buf {
		buf[i] = byte(i)
	}
	start := time.Now()
	for off := 0; off < total; off += chunk {
		if _, err := w.WriteAt(buf, int64(off)); err != nil {
			return 0, fmt.Errorf("WriteAt %d: %w", off, err)
		}
	}
	return float64(total) / time.Since(start).Seconds(), nil
}

// TestLimitOnLoopDevice writes 24 MiB with O_DIRECT to a loop device, once
// unlimited and once through a Limiter at 8 MiB/s, and checks the measured
// rate. It runs on the host's real cgroup hierarchy and states what each
// version guarantees:
//
//   - v1: only the writer thread is in the group; another goroutine
//     writing to the same disk meanwhile is not throttled.
//   - v2: the whole process is in the group (io is not a threaded
//     controller), so that other writer shares the limit; the process's
//     cgroup enables io for the group while it exists; Close puts the
//     process back, removes the group and leaves the parent's
//     cgroup.subtree_control as it was. This needs a cgroup of the
//     process's own that offers io: on a v2 host without it (no
//     Delegate=io, or a cgroup shared with other processes, such as a
//     login shell's) the test skips saying so. `make vmtest` runs it in a
//     v2 guest as a unit with Delegate=io, where it must pass.
func TestLimitOnLoopDevice(t *testing.T) {
	testenv.RequireRoot(t)
	v2 := cgroups.Mode() == cgroups.Unified
	dev := memLoop(t, 32<<20)
	f, err := os.OpenFile(dev, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	const total, chunk, limit = 24 << 20, 1 << 20, 8 << 20
	free, err := writeAll(f, total, chunk)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("unlimited: %.1f MiB/s", free/(1<<20))

	origin := v2Group(t)
	parentCtl := filepath.Join("/sys/fs/cgroup", origin, "cgroup.subtree_control")
	var ctlBefore string
	if v2 {
		ctlBefore = readFile(t, parentCtl)
	}
	name := fmt.Sprintf("ue-test-%d", os.Getpid())
	l := newOrSkipV2(t, Config{Name: name, Device: dev, WriteBPS: limit})
	dir := l.Dir()
	closed := false
	defer func() {
		if !closed {
			l.Close()
		}
	}()
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)); l.Device() != want {
		t.Errorf("Device = %s, want %s", l.Device(), want)
	}
	if v2 {
		if got, want := v2Group(t), path.Join(origin, name); got != want {
			t.Errorf("v2: the process is in %s, want the limited group %s", got, want)
		}
		if ctl := readFile(t, parentCtl); !slices.Contains(strings.Fields(ctl), "io") {
			t.Errorf("v2: %s = %q while limited, want io enabled", parentCtl, ctl)
		}
	}
	w := l.WriterAt(f)
	// Meanwhile another goroutine writes directly to the same disk.
	others := make(chan float64, 1)
	go func() {
		g, err := os.OpenFile(dev, os.O_WRONLY|unix.O_DIRECT, 0)
		if err != nil {
			t.Error(err)
			others <- 0
			return
		}
		defer g.Close()
		time.Sleep(500 * time.Millisecond) // let the limited writer start
		r, err := writeAll(offsetWriter{g, 28 << 20}, 4<<20, chunk)
		if err != nil {
			t.Error(err)
		}
		others <- r
	}()
	limited, err := writeAll(w, total, chunk)
	if err != nil {
		t.Fatal(err)
	}
	r := <-others
	switch {
	case !v2 && r < 2*limit:
		t.Errorf("v1: a write outside the limiter ran at %.1f MiB/s while the limit held; want unthrottled", r/(1<<20))
	case v2 && r > 1.15*limit:
		t.Errorf("v2: another writer of the process ran at %.1f MiB/s; the whole process is in the group, want at most the %d MiB/s limit", r/(1<<20), limit>>20)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	t.Logf("limited to %d MiB/s: %.2f MiB/s (busy %v); the other writer: %.1f MiB/s", limit>>20, limited/(1<<20), l.Stats().Busy, r/(1<<20))
	// The kernel holds the writer under the limit whatever the machine's
	// load; how close it gets to the limit depends on the load, so that is
	// a bench figure, not an assertion.
	if limited > 1.15*limit {
		t.Errorf("limited rate %.2f MiB/s, over %d MiB/s by more than 15%%", limited/(1<<20), limit>>20)
	}
	testenv.Bench(t, "cgroup_limited_rate_ratio", limited/limit, "ratio")

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cgroup %s still exists after Close (%v)", dir, err)
	}
	if v2 {
		if got := v2Group(t); got != origin {
			t.Errorf("v2: after Close the process is in %s, want back in %s", got, origin)
		}
		if got := readFile(t, parentCtl); got != ctlBefore {
			t.Errorf("v2: after Close %s = %q, was %q", parentCtl, got, ctlBefore)
		}
	}
	// The disk is unlimited again for this process.
	if again, err := writeAll(f, 8<<20, chunk); err != nil || again < 2*limit {
		t.Errorf("after Close: %.1f MiB/s (%v), still limited?", again/(1<<20), err)
	}
}

// TestV2SharedCgroup (cgroup v2, root, io offered to the process's own
// cgroup): with another process in that cgroup, the kernel refuses io to a
// child group (no internal processes), so New fails with ErrShared naming
// it, before moving anything: no group, the process where it was.
func TestV2SharedCgroup(t *testing.T) {
	testenv.RequireRoot(t)
	if cgroups.Mode() != cgroups.Unified {
		t.Skip("SKIP: not a cgroup v2 host (this one is v1 or hybrid; TestRealV2WithoutIO covers v2 there)")
	}
	origin := v2Group(t)
	if origin == "/" {
		t.Skip("SKIP: the process is in the root cgroup, which the no-internal-processes rule exempts")
	}
	ctrl := readFile(t, filepath.Join("/sys/fs/cgroup", origin, "cgroup.controllers"))
	if !slices.Contains(strings.Fields(ctrl), "io") {
		t.Skipf("SKIP: %s offers no io (%q): needs Delegate=io", origin, ctrl)
	}
	sleeper := exec.Command("sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	name := fmt.Sprintf("ue-test-shared-%d", os.Getpid())
	l, err := New(t.Context(), Config{Name: name, Device: memLoop(t, 1<<20), WriteBPS: 1 << 20})
	if err == nil {
		l.Close()
		t.Fatal("New succeeded in a cgroup shared with another process")
	}
	if !errors.Is(err, ErrShared) || !strings.Contains(err.Error(), strconv.Itoa(sleeper.Process.Pid)) {
		t.Errorf("error %q: want ErrShared naming the other process %d", err, sleeper.Process.Pid)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", origin, name)); !os.IsNotExist(err) {
		t.Errorf("group left behind: %v", err)
	}
	if got := v2Group(t); got != origin {
		t.Errorf("the process is in %s after the failure, was in %s", got, origin)
	}
}

// newOrSkipV2 is New on the host's real hierarchy; on a cgroup v2 host
// that gives the test process no io-limited group of its own (no io
// delegated, or a cgroup shared with other processes) the test skips.
func newOrSkipV2(t *testing.T, cfg Config) *Limiter {
	t.Helper()
	l, err := New(t.Context(), cfg)
	if err != nil {
		if cgroups.Mode() == cgroups.Unified && (errors.Is(err, ErrUnavailable) || errors.Is(err, ErrShared)) {
			t.Skipf("SKIP: this cgroup v2 host gives the test process no io-limited group of its own: %v "+
				"(run the test binary alone in a unit with Delegate=io: systemd-run -p Delegate=io --wait --pipe ...)", err)
		}
		t.Fatal(err)
	}
	return l
}

// memLoop returns a loop device over a sparse image of size bytes. The
// image lives in memory (tmpfs) when possible, so the disk under the loop
// device is much faster than any limit a test sets, and the throttle
// alone sets the rate.
func memLoop(t *testing.T, size int64) string {
	t.Helper()
	img := filepath.Join(memTempDir(t), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	return testenv.LoopDevice(t, img)
}

// memTempDir returns a temporary directory on /dev/shm when that is a
// tmpfs, else t.TempDir().
func memTempDir(t *testing.T) string {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &fs); err != nil || fs.Type != unix.TMPFS_MAGIC {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "cgroup-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// offsetWriter shifts every write by base.
type offsetWriter struct {
	f    *os.File
	base int64
}

func (o offsetWriter) WriteAt(p []byte, off int64) (int, error) { return o.f.WriteAt(p, o.base+off) }

// TestRealV2WithoutIO mounts a real cgroup2 hierarchy on a host whose I/O
// controller is bound to cgroup v1 (so "io" is missing from v2, as on a
// hybrid host or a delegated subtree without it). New must fail with
// ErrUnavailable saying so, leave no group behind and leave the process
// where it was. (On a cgroup v2 host, TestLimitOnLoopDevice covers v2.)
func TestRealV2WithoutIO(t *testing.T) {
	testenv.RequireRoot(t)
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		t.Skip("SKIP: the host is cgroup v2; a second mount would be the same hierarchy")
	}
	root := t.TempDir()
	if err := unix.Mount("none", root, "cgroup2", 0, ""); err != nil {
		t.Skipf("SKIP: cannot mount cgroup2: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(root, 0); err != nil {
			t.Errorf("umount %s: %v", root, err)
		}
	})
	ctrl, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(" "+string(ctrl)+" ", " io ") {
		t.Skipf("SKIP: io is available in cgroup v2 here (%q)", ctrl)
	}
	before := v2Group(t)

	l, err := New(t.Context(), Config{Root: root, Version: 2, Device: "7:0", WriteBPS: 1 << 20, Name: "ue-test"})
	if err == nil {
		l.Close()
		t.Fatal("New succeeded without the io controller")
	}
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no io controller") {
		t.Errorf("error %q: want ErrUnavailable saying there is no io controller", err)
	}
	if _, err := os.Stat(filepath.Join(root, "ue-test")); !os.IsNotExist(err) {
		t.Errorf("group left behind: %v", err)
	}
	if got := v2Group(t); got != before {
		t.Errorf("process is in %q after the failure, was in %q", got, before)
	}
}

// v2Group is this process's cgroup v2 path ("0::" line of /proc/self/cgroup).
func v2Group(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if g, ok := strings.CutPrefix(line, "0::"); ok {
			return g
		}
	}
	return ""
}
