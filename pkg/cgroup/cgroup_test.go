package cgroup

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
	"golang.org/x/sys/unix"
)

// tidWriter records the OS thread each WriteAt ran on.
type tidWriter struct {
	tid    atomic.Int64
	n      atomic.Int64
	synced atomic.Bool
	closed atomic.Bool
}

func (w *tidWriter) WriteAt(p []byte, off int64) (int, error) {
	w.tid.Store(int64(unix.Gettid()))
	w.n.Add(int64(len(p)))
	return len(p), nil
}
func (w *tidWriter) Sync() error  { w.synced.Store(true); return nil }
func (w *tidWriter) Close() error { w.closed.Store(true); return nil }

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrPermission) {
		// containerd/cgroups writes control files with mode 0, which
		// only root can read back; a test run as another user owns the
		// fake files and may open them up.
		if err = os.Chmod(p, 0o644); err == nil {
			b, err = os.ReadFile(p)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestFakeV1(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "blkio"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := New(t.Context(), Config{Name: "ue-test", Device: "7:3", WriteBPS: 8 << 20,
		Root: root, Version: 1, SysRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "blkio", "ue-test")
	if l.Dir() != dir {
		t.Errorf("Dir = %s, want %s", l.Dir(), dir)
	}
	if got, want := readFile(t, filepath.Join(dir, "blkio.throttle.write_bps_device")), "7:3 8388608"; got != want {
		t.Errorf("write_bps_device = %q, want %q", got, want)
	}
	tw := &tidWriter{}
	w := l.WriterAt(tw)
	if n, err := w.WriteAt(make([]byte, 4096), 0); n != 4096 || err != nil {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	if _, err := w.WriteAt(make([]byte, 512), 8192); err != nil {
		t.Fatal(err)
	}
	tid := strconv.FormatInt(tw.tid.Load(), 10)
	if got := readFile(t, filepath.Join(dir, "tasks")); got != tid {
		t.Errorf("tasks = %q, want the writing thread %s", got, tid)
	}
	if tw.tid.Load() == int64(unix.Gettid()) {
		t.Errorf("write ran on the caller's thread")
	}
	if err := w.Sync(); err != nil || !tw.synced.Load() {
		t.Errorf("Sync = %v, synced %v", err, tw.synced.Load())
	}
	if st := l.Stats(); st.Bytes != 4096+512 || st.Writes != 2 || st.Busy <= 0 {
		t.Errorf("Stats = %+v", st)
	}
	// The kernel would list no processes once the thread left; the fake
	// hierarchy needs the file for Delete's emptiness check.
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if got := readFile(t, filepath.Join(root, "blkio", "tasks")); got != tid {
		t.Errorf("root tasks = %q, want thread %s moved back", got, tid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("group dir still there after Close: %v", err)
	}
	if _, err := w.WriteAt(make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteAt after Close err = %v, want ErrClosed", err)
	}
	if err := w.Close(); err != nil || !tw.closed.Load() {
		t.Errorf("Writer.Close = %v, closed %v", err, tw.closed.Load())
	}
}

func TestFakeV2(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu io memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := New(t.Context(), Config{Name: "ue-test", Device: "8:0", WriteBPS: 1 << 20,
		Root: root, Version: 2, SysRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "ue-test")
	pid := strconv.Itoa(os.Getpid())
	for _, c := range []struct{ file, want string }{
		{filepath.Join(dir, "io.max"), "8:0 wbps=1048576"},
		{filepath.Join(dir, "cgroup.procs"), pid},
		{filepath.Join(root, "cgroup.subtree_control"), "+io"},
	} {
		if got := readFile(t, c.file); got != c.want {
			t.Errorf("%s = %q, want %q", c.file, got, c.want)
		}
	}
	tw := &tidWriter{}
	if _, err := l.WriterAt(tw).WriteAt([]byte("x"), 0); err != nil || tw.n.Load() != 1 {
		t.Fatalf("WriteAt: %v, %d bytes", err, tw.n.Load())
	}
	// Simulate the kernel: moving the process out empties the group.
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(root, "cgroup.procs")); got != pid {
		t.Errorf("root cgroup.procs = %q, want %s", got, pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("group dir still there after Close: %v", err)
	}
	// New turned io on, so Close turns it off again.
	if got := readFile(t, filepath.Join(root, "cgroup.subtree_control")); got != "-io" {
		t.Errorf("subtree_control after Close = %q, want io disabled again (-io)", got)
	}
}

// TestFakeV2KeepsIOForOthers: io that was on before New stays on after
// Close; io New turned on stays on while another child group has a limit
// of its own, and then the kernel would refuse the process back, so Close
// lifts the group's limit and says why.
func TestFakeV2KeepsIOForOthers(t *testing.T) {
	for _, tc := range []struct {
		name, ctl string
		sibling   bool
		wantErr   string
		wantCtl   string
	}{
		{name: "io on before", ctl: "io", wantCtl: "io"},
		{name: "sibling uses io", sibling: true, wantErr: "keeps io enabled", wantCtl: "+io"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte(tc.ctl), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("io memory\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			l, err := New(t.Context(), Config{Name: "ue-test", Device: "8:0", WriteBPS: 1 << 20, Root: root, Version: 2, SysRoot: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if tc.sibling {
				if err := os.MkdirAll(filepath.Join(root, "other"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(root, "other", "io.max"), []byte("8:0 rbps=1"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err = l.Close()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Close = %v, want error containing %q", err, tc.wantErr)
			}
			if got := readFile(t, filepath.Join(root, "cgroup.subtree_control")); got != tc.wantCtl {
				t.Errorf("subtree_control = %q, want %q", got, tc.wantCtl)
			}
			if tc.sibling {
				if got := readFile(t, filepath.Join(root, "ue-test", "io.max")); got != "8:0 wbps=max" {
					t.Errorf("io.max of the group the process stays in = %q, want the limit lifted", got)
				}
			}
		})
	}
}

// A v2 hierarchy whose parent does not offer io: ErrUnavailable, and no
// group is made.
func TestFakeV2WithoutIO(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(t.Context(), Config{Name: "ue-test", Device: "8:0", WriteBPS: 1 << 20,
		Root: root, Version: 2, SysRoot: t.TempDir()})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), `"cpu memory pids"`) {
		t.Fatalf("err = %v, want ErrUnavailable naming the controllers on offer", err)
	}
	if _, err := os.Stat(filepath.Join(root, "ue-test")); !os.IsNotExist(err) {
		t.Errorf("group made: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	root := t.TempDir()
	plain := filepath.Join(root, "file")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr error
	}{
		{name: "zero rate", cfg: Config{Device: "7:0", Root: root, Version: 1}, wantErr: ErrInvalidConfig},
		{name: "nested name", cfg: Config{Name: "a/b", Device: "7:0", WriteBPS: 1, Root: root, Version: 1}, wantErr: ErrInvalidConfig},
		{name: "root without version", cfg: Config{Device: "7:0", WriteBPS: 1, Root: root}, wantErr: ErrInvalidConfig},
		{name: "bad version", cfg: Config{Device: "7:0", WriteBPS: 1, Root: root, Version: 3}, wantErr: ErrInvalidConfig},
		{name: "empty device", cfg: Config{WriteBPS: 1, Root: root, Version: 1}, wantErr: ErrInvalidConfig},
		{name: "regular file", cfg: Config{Device: plain, WriteBPS: 1, Root: root, Version: 1}, wantErr: ErrNotBlockDevice},
		{name: "missing device", cfg: Config{Device: filepath.Join(root, "nope"), WriteBPS: 1, Root: root, Version: 1}, wantErr: ErrNotBlockDevice},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := New(t.Context(), tc.cfg)
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("New err = %v, want %v", err, tc.wantErr)
			}
			if l != nil {
				l.Close()
			}
		})
	}
}

func TestDiskOf(t *testing.T) {
	sys := t.TempDir()
	// A disk 7:3 with one partition 259:0, laid out as sysfs does.
	disk := filepath.Join(sys, "devices", "virtual", "block", "loop3")
	part := filepath.Join(disk, "loop3p1")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(part, 0o755))
	must(os.WriteFile(filepath.Join(disk, "dev"), []byte("7:3\n"), 0o644))
	must(os.WriteFile(filepath.Join(part, "dev"), []byte("259:0\n"), 0o644))
	must(os.WriteFile(filepath.Join(part, "partition"), []byte("1\n"), 0o644))
	must(os.MkdirAll(filepath.Join(sys, "dev", "block"), 0o755))
	must(os.Symlink(disk, filepath.Join(sys, "dev", "block", "7:3")))
	must(os.Symlink(part, filepath.Join(sys, "dev", "block", "259:0")))
	tests := []struct {
		name    string
		dev     string
		want    string
		wantErr error
	}{
		{name: "whole disk", dev: "7:3", want: "7:3"},
		{name: "partition to disk", dev: "259:0", want: "7:3"},
		{name: "unknown to sysfs", dev: "8:16", want: "8:16"},
		{name: "not a number", dev: "a:b", wantErr: ErrNotBlockDevice},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ma, mi, err := diskOf(tc.dev, sys)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got := strconv.Itoa(int(ma)) + ":" + strconv.Itoa(int(mi)); err == nil && got != tc.want {
				t.Errorf("diskOf(%s) = %s, want %s", tc.dev, got, tc.want)
			}
		})
	}
}

func TestNilLimiterWritesDirectly(t *testing.T) {
	var l *Limiter
	tw := &tidWriter{}
	if _, err := l.WriterAt(tw).WriteAt([]byte("abc"), 0); err != nil || tw.n.Load() != 3 {
		t.Fatalf("WriteAt: %v, %d bytes", err, tw.n.Load())
	}
	if err := l.Close(); err != nil {
		t.Error(err)
	}
	if l.Stats() != (Stats{}) || l.Dir() != "" {
		t.Error("nil Limiter reports state")
	}
}

func TestNiceThread(t *testing.T) {
	errc := make(chan error, 1)
	got := make(chan int, 1)
	go func() {
		if err := NiceThread(7); err != nil {
			errc <- err
			return
		}
		p, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
		errc <- err
		got <- p
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// The raw syscall returns 20 - nice.
	if p := <-got; 20-p != 7 {
		t.Errorf("thread nice = %d, want 7", 20-p)
	}
	if err := NiceThread(40); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NiceThread(40) = %v, want ErrInvalidConfig", err)
	}
}

// TestFakeV1ReusesLeftover: a group left behind by a killed daemon (empty,
// maybe with an old limit) is taken over by the next New.
func TestFakeV1ReusesLeftover(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "blkio", "ue-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "blkio.throttle.write_bps_device"), []byte("7:3 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := New(t.Context(), Config{Name: "ue-test", Device: "7:3", WriteBPS: 4096,
		Root: root, Version: 1, SysRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "blkio.throttle.write_bps_device")); got != "7:3 4096" {
		t.Errorf("write_bps_device = %q, want the new limit", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkWriterHop measures what running each WriteAt on the limiter's
// thread costs over a direct call, with a no-op writer (fake hierarchy).
func BenchmarkWriterHop(b *testing.B) {
	root := b.TempDir()
	if err := os.Mkdir(filepath.Join(root, "blkio"), 0o755); err != nil {
		b.Fatal(err)
	}
	l, err := New(b.Context(), Config{Name: "ue-bench", Device: "7:3", WriteBPS: 1 << 30,
		Root: root, Version: 1, SysRoot: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = os.WriteFile(filepath.Join(l.Dir(), "cgroup.procs"), nil, 0o644)
		l.Close()
	}()
	const n = 20000
	buf := make([]byte, 4096)
	tw := &tidWriter{}
	per := func(w interface {
		WriteAt([]byte, int64) (int, error)
	}) float64 {
		start := time.Now()
		for i := range n {
			if _, err := w.WriteAt(buf, int64(i)*4096); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(start).Nanoseconds()) / n
	}
	for b.Loop() {
		direct := per(tw)
		hop := per(l.WriterAt(tw))
		testenv.Bench(b, "cgroup_writeat_direct", direct, "ns/op")
		testenv.Bench(b, "cgroup_writeat_hop", hop, "ns/op")
		testenv.Bench(b, "cgroup_writeat_hop_overhead", hop-direct, "ns/op")
	}
}
