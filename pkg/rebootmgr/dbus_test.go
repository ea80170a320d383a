package rebootmgr

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/update1"
)

// fakeLogind is exported as org.freedesktop.login1 on a private bus and
// records Reboot calls.
type fakeLogind struct {
	mu         sync.Mutex // guards the fields below
	inhibitors []Inhibitor
	lists      int
	reboots    []bool // interactive argument of each Reboot call
}

func (l *fakeLogind) ListInhibitors() ([]Inhibitor, *dbus.Error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lists++
	return append([]Inhibitor(nil), l.inhibitors...), nil
}

func (l *fakeLogind) Reboot(interactive bool) *dbus.Error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reboots = append(l.reboots, interactive)
	return nil
}

func (l *fakeLogind) counts() (lists, reboots int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lists, len(l.reboots)
}

// fakeEngine is exported as com.coreos.update1 and emits StatusUpdate.
type fakeEngine struct {
	conn *dbus.Conn
	mu   sync.Mutex // guards st
	st   update1.Status
}

func (e *fakeEngine) GetStatus() (int64, float64, string, string, int64, *dbus.Error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.st.LastCheckedTime, e.st.Progress, e.st.CurrentOperation, e.st.NewVersion, e.st.NewSize, nil
}

func (e *fakeEngine) set(t *testing.T, op string) {
	t.Helper()
	e.mu.Lock()
	e.st.CurrentOperation = op
	s := e.st
	e.mu.Unlock()
	if err := e.conn.Emit(dbus.ObjectPath(update1.Path), update1.Interface+"."+update1.SignalStatusUpdate,
		s.LastCheckedTime, s.Progress, s.CurrentOperation, s.NewVersion, s.NewSize); err != nil {
		t.Fatal(err)
	}
}

// startServices exports fake logind and update_engine on a private bus
// and returns them with the bus address.
func startServices(t *testing.T) (string, *fakeLogind, *fakeEngine) {
	t.Helper()
	addr := testenv.DBus(t)
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	logind := &fakeLogind{}
	engine := &fakeEngine{conn: conn, st: update1.Status{LastCheckedTime: 1700000000, CurrentOperation: update1.StatusIdle, NewVersion: "0.0.0"}}
	if err := conn.ExportMethodTable(map[string]any{
		"ListInhibitors": logind.ListInhibitors, "Reboot": logind.Reboot,
	}, LogindPath, LogindInterface); err != nil {
		t.Fatal(err)
	}
	if err := conn.ExportMethodTable(map[string]any{"GetStatus": engine.GetStatus}, dbus.ObjectPath(update1.Path), update1.Interface); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{LogindName, update1.Name} {
		if r, err := conn.RequestName(name, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
			t.Fatalf("RequestName %s: %v, %v", name, r, err)
		}
	}
	return addr, logind, engine
}

type runningManager struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    *error
}

func (r runningManager) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("manager did not stop")
	}
}

func startManager(t *testing.T, m *Manager) runningManager {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	r := runningManager{cancel: cancel, done: make(chan struct{}), err: new(error)}
	go func() { *r.err = m.Run(ctx); close(r.done) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func TestManagerRebootsOnStatusUpdateSignal(t *testing.T) {
	addr, logind, engine := startServices(t)
	dir := t.TempDir()
	coordPath := filepath.Join(dir, "coordinator.conf")
	statePath := filepath.Join(dir, "state.json")
	clock := newFastClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), 1000)

	newManager := func(window *Window) (*Manager, func()) {
		conn, err := Connect(addr)
		if err != nil {
			t.Fatal(err)
		}
		coord, err := OpenCoordinator(coordPath, "update_engine_reboot_manager", "reboot")
		if err != nil {
			t.Fatal(err)
		}
		m := &Manager{
			Strategy:    StrategyReboot,
			Window:      window,
			Status:      update1.NewClient(conn),
			Rebooter:    &Logind{Conn: conn, Clock: clock, Retry: time.Minute, Logf: testLogf(t, "logind: ")},
			Clock:       clock,
			StateFile:   statePath,
			Coordinator: coord,
			BootID:      func() string { return "boot-1" },
			Logf:        testLogf(t, "manager: "),
		}
		return m, func() { coord.Close(); conn.Close() }
	}

	m, closeM := newManager(nil)
	run := startManager(t, m)
	waitFor(t, "STATE=running", func() bool { return fileHas(coordPath, "STATE=running") })

	// A malformed StatusUpdate (int32 time) saying NEED_REBOOT is skipped.
	if err := engine.conn.Emit(dbus.ObjectPath(update1.Path), update1.Interface+"."+update1.SignalStatusUpdate,
		int32(1), 1.0, update1.StatusUpdatedNeedReboot, "2.0.0", int64(1)); err != nil {
		t.Fatal(err)
	}
	// A shutdown block inhibitor holds the reboot back.
	logind.mu.Lock()
	logind.inhibitors = []Inhibitor{
		{What: "sleep", Who: "x", Why: "y", Mode: "block"},
		{What: "sleep:shutdown", Who: "backup", Why: "copying", Mode: "block", UID: 0, PID: 42},
	}
	logind.mu.Unlock()
	engine.set(t, update1.StatusUpdatedNeedReboot)
	waitFor(t, "two inhibitor checks", func() bool { l, _ := logind.counts(); return l >= 2 })
	if _, r := logind.counts(); r != 0 {
		t.Fatalf("rebooted despite a shutdown block inhibitor")
	}
	if !fileHas(coordPath, "STATE=rebooting") || !fileHas(statePath, `"phase":"rebooting"`) {
		t.Fatalf("coordinator/state not at rebooting")
	}
	// A delay inhibitor does not block.
	logind.mu.Lock()
	logind.inhibitors = []Inhibitor{{What: "shutdown", Who: "x", Why: "y", Mode: "delay"}}
	logind.mu.Unlock()
	waitFor(t, "Reboot call", func() bool { _, r := logind.counts(); return r == 1 })
	logind.mu.Lock()
	if logind.reboots[0] != false {
		t.Errorf("Reboot(interactive=%v), want false", logind.reboots[0])
	}
	logind.mu.Unlock()
	run.stop(t)
	closeM()

	// The manager restarts before the machine went down: the saved intent
	// resumes the reboot at once, even outside a reboot window.
	closed, err := ParseWindow(clock.Now().Add(6*time.Hour).Format("15:04"), "1h")
	if err != nil {
		t.Fatal(err)
	}
	m, closeM = newManager(closed)
	run = startManager(t, m)
	waitFor(t, "resumed Reboot call", func() bool { _, r := logind.counts(); return r == 2 })
	run.stop(t)
	closeM()

	// After the reboot update_engine is idle: the intent is cleared.
	engine.set(t, update1.StatusIdle)
	m, closeM = newManager(closed)
	run = startManager(t, m)
	waitFor(t, "intent cleared", func() bool { return fileHas(statePath, `"phase":""`) })
	waitFor(t, "STATE=running", func() bool { return fileHas(coordPath, "STATE=running") })

	// A new update outside the window waits for it (6 h = 21.6 s at
	// scale 1000 is too long to wait: check it only plans).
	engine.set(t, update1.StatusUpdatedNeedReboot)
	waitFor(t, "STATE=reboot-planned", func() bool { return fileHas(coordPath, "STATE=reboot-planned") })
	// ResetStatus by an operator cancels the plan.
	engine.set(t, update1.StatusIdle)
	waitFor(t, "STATE=running after cancel", func() bool { return fileHas(coordPath, "STATE=running") })
	if _, r := logind.counts(); r != 2 {
		t.Fatalf("reboots = %d, want 2", r)
	}
	run.stop(t)
	closeM()
}

func TestManagerWaitsForWindow(t *testing.T) {
	src := newMemSource(update1.StatusUpdatedNeedReboot)
	// Window opens 2 min after the clock's start: 120 ms at scale 1000.
	base := time.Date(2026, 11, 26, 3, 58, 0, 0, time.UTC)
	clock := newFastClock(base, 1000)
	w, _ := ParseWindow("04:00", "30m")
	rebootAt := make(chan time.Time, 1)
	m := &Manager{
		Strategy: StrategyReboot, Window: w, Status: src, Clock: clock,
		Rebooter: funcRebooter(func(ctx context.Context) error { rebootAt <- clock.Now(); return nil }),
		Logf:     testLogf(t, ""),
	}
	startManager(t, m)
	select {
	case at := <-rebootAt:
		if s, _ := w.Next(at); at.Before(time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)) || !s.Equal(time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)) {
			t.Fatalf("rebooted at %v, outside the window", at)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no reboot")
	}
}

func TestManagerExitsWhenBusIsLost(t *testing.T) {
	addr, _, _ := startServices(t)
	conn, err := Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	clock := newFastClock(time.Now(), 1000)
	coordPath := filepath.Join(t.TempDir(), "coordinator.conf")
	coord, err := OpenCoordinator(coordPath, "m", "reboot")
	if err != nil {
		t.Fatal(err)
	}
	defer coord.Close()
	m := &Manager{Strategy: StrategyReboot, Status: update1.NewClient(conn), Clock: clock, Coordinator: coord,
		Rebooter: &Logind{Conn: conn, Clock: clock}}
	run := startManager(t, m)
	waitFor(t, "STATE=running", func() bool { return fileHas(coordPath, "STATE=running") })
	conn.Close()
	select {
	case <-run.done:
		if !errors.Is(*run.err, ErrStatusLost) {
			t.Fatalf("Run = %v, want ErrStatusLost", *run.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("manager kept running without a bus")
	}
}

func TestManagerResumesOnlyInSameBoot(t *testing.T) {
	tests := []struct {
		name       string
		bootID     string
		wantReboot bool
	}{
		{name: "same boot resumes at once", bootID: "boot-1", wantReboot: true},
		{name: "new boot waits for the window", bootID: "boot-0", wantReboot: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state.json")
			if err := SaveIntent(state, Intent{Phase: PhaseRebooting, Version: "2.0.0", BootID: tt.bootID}); err != nil {
				t.Fatal(err)
			}
			clock := newFastClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), 1000)
			w, _ := ParseWindow("18:00", "1h") // 6 h away: 21.6 s at scale 1000
			rebooted := make(chan struct{}, 1)
			m := &Manager{
				Strategy: StrategyReboot, Window: w, Status: newMemSource(update1.StatusUpdatedNeedReboot), Clock: clock,
				StateFile: state, BootID: func() string { return "boot-1" },
				Rebooter: funcRebooter(func(ctx context.Context) error { rebooted <- struct{}{}; return nil }),
			}
			run := startManager(t, m)
			select {
			case <-rebooted:
				if !tt.wantReboot {
					t.Fatal("rebooted outside the window after a new boot")
				}
			case <-time.After(500 * time.Millisecond):
				if tt.wantReboot {
					t.Fatal("did not resume the committed reboot")
				}
			}
			run.stop(t)
		})
	}
}
