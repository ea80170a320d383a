package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// fakeClock is an injected clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// fakeStalls is a pressure source: one workload whose stall total grows by
// share × elapsed at each advance.
type fakeStalls struct {
	total time.Duration
	err   error
}

func (f *fakeStalls) Stalls() (map[string]time.Duration, error) {
	return map[string]time.Duration{"/workload": f.total}, f.err
}

// rates records every rate set.
type rates struct {
	set []uint64
	err error
}

func (r *rates) SetWriteBPS(bps uint64) error {
	if r.err != nil {
		return r.err
	}
	r.set = append(r.set, bps)
	return nil
}

const mib = 1 << 20

// TestAdaptiveAIMD drives the controller through named phases of
// synthetic pressure and checks each step's rate.
func TestAdaptiveAIMD(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	src := &fakeStalls{}
	dst := &rates{}
	a, err := NewAdaptive(AdaptiveConfig{Floor: 4 * mib, Ceiling: 256 * mib, Target: 0.1, Step: 8 * mib}, src, dst, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	if len(dst.set) != 1 || dst.set[0] != 256*mib {
		t.Fatalf("start: rates set %v, want the ceiling", dst.set)
	}
	// step advances the clock by 500 ms, during which the workload was
	// stalled share of the time.
	step := func(share float64) uint64 {
		t.Helper()
		d := 500 * time.Millisecond
		clk.t = clk.t.Add(d)
		src.total += time.Duration(share * float64(d))
		r, err := a.Step()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := step(0.9); r != 256*mib {
		t.Errorf("first step (no baseline yet) = %d MiB/s, want the ceiling", r/mib)
	}
	phases := []struct {
		name   string
		shares []float64
		want   []uint64 // MiB/s after each step
	}{
		{name: "under target stays at ceiling", shares: []float64{0.05, 0.1}, want: []uint64{256, 256}},
		{name: "over target halves each interval", shares: []float64{0.15, 0.11, 0.2}, want: []uint64{128, 64, 32}},
		{name: "far over target cuts to target/share", shares: []float64{0.4}, want: []uint64{8}},
		{name: "cut stops at the floor", shares: []float64{1, 0.15}, want: []uint64{4, 4}},
		{name: "under target grows by step", shares: []float64{0, 0.02, 0.09}, want: []uint64{12, 20, 28}},
		{name: "one spike halves again", shares: []float64{0.2, 0}, want: []uint64{14, 22}},
	}
	for _, ph := range phases {
		for i, s := range ph.shares {
			if got := step(s) / mib; got != ph.want[i] {
				t.Errorf("%s: step %d (share %.2f) = %d MiB/s, want %d", ph.name, i, s, got, ph.want[i])
			}
		}
	}
	if p := a.Pressure(); p != 0 {
		t.Errorf("Pressure = %v, want the last interval's 0", p)
	}
	// Long calm: it climbs to the ceiling and stays.
	for range 100 {
		step(0)
	}
	if a.Rate() != 256*mib || dst.set[len(dst.set)-1] != 256*mib {
		t.Errorf("after a long calm: %d MiB/s, want the ceiling", a.Rate()/mib)
	}
	for i := 1; i < len(dst.set); i++ {
		if dst.set[i] == dst.set[i-1] {
			t.Errorf("rate %d set twice in a row: the controller writes only changes", dst.set[i])
		}
		if dst.set[i] < 4*mib || dst.set[i] > 256*mib {
			t.Errorf("rate %d outside floor and ceiling", dst.set[i])
		}
	}
}

// The worst of several workloads decides, and how far over the target it
// is sets the cut (target/share); workloads that appear count from their
// second sample.
func TestAdaptiveWorstGroup(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	samples := []map[string]time.Duration{
		{"/a": 0, "/b": 0},
		{"/a": 10 * time.Millisecond, "/b": 400 * time.Millisecond, "/new": 900 * time.Millisecond},  // b: 40%
		{"/a": 20 * time.Millisecond, "/b": 410 * time.Millisecond, "/new": 1700 * time.Millisecond}, // new: 80%
		{"/a": 30 * time.Millisecond}, // b and new gone
	}
	i := 0
	src := sourceFunc(func() (map[string]time.Duration, error) { s := samples[i]; i++; return s, nil })
	a, err := NewAdaptive(AdaptiveConfig{Floor: mib, Ceiling: 64 * mib, Step: mib}, src, &rates{}, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range []struct {
		rate     uint64
		pressure float64
	}{{64 * mib, 0}, {16 * mib, 0.4}, {2 * mib, 0.8}, {3 * mib, 0.01}} {
		clk.t = clk.t.Add(time.Second)
		r, err := a.Step()
		if err != nil {
			t.Fatal(err)
		}
		if r != want.rate || a.Pressure() != want.pressure {
			t.Errorf("sample %d: rate %d MiB/s, pressure %v; want %d MiB/s, %v", k, r/mib, a.Pressure(), want.rate/mib, want.pressure)
		}
	}
}

type sourceFunc func() (map[string]time.Duration, error)

func (f sourceFunc) Stalls() (map[string]time.Duration, error) { return f() }

// Errors from the source or the setter leave the rate where it was.
func TestAdaptiveErrors(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	src := &fakeStalls{}
	dst := &rates{}
	a, err := NewAdaptive(AdaptiveConfig{Floor: mib, Ceiling: 64 * mib}, src, dst, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	a.Step()
	src.err = ErrNoPressure
	clk.t = clk.t.Add(time.Second)
	src.total += time.Second
	if r, err := a.Step(); !errors.Is(err, ErrNoPressure) || r != 64*mib {
		t.Errorf("source error: rate %d, err %v", r, err)
	}
	src.err = nil
	dst.err = ErrClosed
	clk.t = clk.t.Add(time.Second)
	src.total += time.Second
	if r, err := a.Step(); !errors.Is(err, ErrClosed) || r != 64*mib || a.Rate() != 64*mib {
		t.Errorf("setter error: rate %d, err %v", r, err)
	}
}

func TestAdaptiveConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  AdaptiveConfig
	}{
		{name: "no floor", cfg: AdaptiveConfig{Ceiling: mib}},
		{name: "ceiling under floor", cfg: AdaptiveConfig{Floor: 2 * mib, Ceiling: mib}},
		{name: "target 1", cfg: AdaptiveConfig{Floor: mib, Ceiling: mib, Target: 1}},
		{name: "cut 1", cfg: AdaptiveConfig{Floor: mib, Ceiling: mib, Cut: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewAdaptive(tc.cfg, &fakeStalls{}, &rates{}, time.Now); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// TestPSIStalls reads a fake unified hierarchy: every group beside the
// engine's path and under its group, never the path itself.
func TestPSIStalls(t *testing.T) {
	root := t.TempDir()
	psi := func(dir string, us int) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		body := "some avg10=1.00 avg60=0.50 avg300=0.10 total=" + strconv.Itoa(us) + "\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n"
		if err := os.WriteFile(filepath.Join(root, dir, "io.pressure"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	psi("/", 1)
	psi("/system.slice", 2)
	psi("/system.slice/ue.service", 3)
	psi("/system.slice/ue.service/update_engine", 4)
	psi("/system.slice/ue.service/update_engine/child", 5)
	psi("/system.slice/db.service", 6)
	psi("/user.slice", 7)
	psi("/init.scope", 8)
	got, err := (&PSI{Root: root, Self: "/system.slice/ue.service/update_engine"}).Stalls()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{
		"/system.slice/db.service": 6 * time.Microsecond, "/user.slice": 7 * time.Microsecond,
		"/init.scope": 8 * time.Microsecond, "/system.slice/ue.service/update_engine/child": 5 * time.Microsecond,
	}
	if len(got) != len(want) {
		t.Errorf("Stalls = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Stalls[%s] = %v, want %v", k, got[k], v)
		}
	}
	// The engine in the root group (a hybrid host where everything is in
	// "/"): every top-level group is another workload.
	got, err = (&PSI{Root: root, Self: "/"}).Stalls()
	if err != nil || len(got) != 3 || got["/system.slice"] != 2*time.Microsecond {
		t.Errorf("Self /: Stalls = %v, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(root, "init.scope", "io.pressure"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (&PSI{Root: root, Self: "/"}).Stalls(); err == nil {
		t.Error("a bad io.pressure file read without error")
	}
}

// SetWriteBPS rewrites the limit file of either version.
func TestSetWriteBPSFake(t *testing.T) {
	for _, tc := range []struct {
		version    int
		setup      func(root string) error
		file, want string
	}{
		{version: 1, setup: func(root string) error { return os.Mkdir(filepath.Join(root, "blkio"), 0o755) },
			file: "blkio/ue-test/blkio.throttle.write_bps_device", want: "7:3 2097152"},
		{version: 2, setup: func(root string) error {
			return errors.Join(os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), nil, 0o644),
				os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("io\n"), 0o644))
		}, file: "ue-test/io.max", want: "7:3 wbps=2097152"},
	} {
		t.Run("v"+strconv.Itoa(tc.version), func(t *testing.T) {
			root := t.TempDir()
			if err := tc.setup(root); err != nil {
				t.Fatal(err)
			}
			l, err := New(t.Context(), Config{Name: "ue-test", Device: "7:3", WriteBPS: 8 * mib, Root: root, Version: tc.version, SysRoot: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.SetWriteBPS(2 * mib); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, filepath.Join(root, tc.file)); got != tc.want || l.WriteBPS() != 2*mib {
				t.Errorf("after SetWriteBPS: %s = %q, WriteBPS %d; want %q", tc.file, got, l.WriteBPS(), tc.want)
			}
			if err := l.SetWriteBPS(0); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("SetWriteBPS(0) = %v", err)
			}
			_ = os.WriteFile(filepath.Join(l.Dir(), "cgroup.procs"), nil, 0o644)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := l.SetWriteBPS(mib); !errors.Is(err, ErrClosed) {
				t.Errorf("SetWriteBPS after Close = %v, want ErrClosed", err)
			}
		})
	}
}
