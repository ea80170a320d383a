package rebootmgr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/abupdate/update_engine/internal/dbusapi"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/update1"
)

// Tests of issue 13 item 1: StatusUpdate is trusted only from the current
// owner of com.coreos.update1, and UPDATED_NEED_REBOOT only once the
// owner's GetStatus says so. They run on a system-like bus with the shipped
// policy (dist/com.coreos.update1.conf); update_engine is the project's
// dbusapi server over stubEngine, logind the recording fakeLogind, and the
// forger is busctl run as user nobody. Every forgery is followed by a
// message whose effect the test waits for; the bus monitor guarantees the
// forgery was queued before it, so nothing here depends on timing.

// stubEngine is an update_engine stuck in one status.
type stubEngine struct {
	mu sync.Mutex // guards st
	st update1.Status
}

func (e *stubEngine) Status() update1.Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.st
}
func (e *stubEngine) Detail() update1.Detail { return update1.Detail{Status: e.Status()} }
func (e *stubEngine) AttemptUpdate(context.Context, dbusapi.UpdateRequest) error {
	return errors.New("stub: no updates")
}
func (e *stubEngine) ResetStatus(context.Context) error { return errors.New("stub: no reset") }
func (e *stubEngine) AttemptRollback(context.Context, bool) error {
	return errors.New("stub: no rollback")
}
func (e *stubEngine) SetChannel(context.Context, string) error { return errors.New("stub: no channel") }

func (e *stubEngine) set(op, version string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.st = update1.Status{LastCheckedTime: 1700000000, CurrentOperation: op, NewVersion: version}
}

// logindPolicy lets root own org.freedesktop.login1 and anyone call it, as
// systemd's org.freedesktop.login1.conf does.
const logindPolicy = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <policy user="root"><allow own="org.freedesktop.login1"/></policy>
  <policy context="default"><allow send_destination="org.freedesktop.login1"/></policy>
</busconfig>
`

type policyBus struct {
	addr   string
	mon    *testenv.BusMonitor
	logind *fakeLogind
}

func startPolicyBus(t *testing.T) *policyBus {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "dbus-daemon", "busctl", "runuser")
	dist, err := filepath.Abs("../../dist/com.coreos.update1.conf")
	if err != nil {
		t.Fatal(err)
	}
	logindConf := filepath.Join(t.TempDir(), "org.freedesktop.login1.conf")
	if err := os.WriteFile(logindConf, []byte(logindPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &policyBus{addr: testenv.SystemDBus(t, dist, logindConf), logind: &fakeLogind{}}
	b.mon = testenv.Monitor(t, b.addr)
	conn := b.connect(t)
	if err := conn.ExportMethodTable(map[string]any{
		"ListInhibitors": b.logind.ListInhibitors, "Reboot": b.logind.Reboot,
	}, LogindPath, LogindInterface); err != nil {
		t.Fatal(err)
	}
	if r, err := conn.RequestName(LogindName, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName %s: %v, %v", LogindName, r, err)
	}
	return b
}

// connect opens a root connection, closed at cleanup.
func (b *policyBus) connect(t *testing.T) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(b.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// serve exports an update_engine in op on conn; it then owns the name.
func (b *policyBus) serve(t *testing.T, conn *dbus.Conn, op, version string) (*dbusapi.Server, *stubEngine) {
	t.Helper()
	eng := &stubEngine{}
	eng.set(op, version)
	srv, err := dbusapi.Export(t.Context(), conn, eng, dbusapi.Options{SkipChromeOSName: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv, eng
}

// emit sends StatusUpdate from conn (owner or not) and waits until the bus
// has routed it.
func (b *policyBus) emit(t *testing.T, conn *dbus.Conn, op, version string) {
	t.Helper()
	if err := conn.Emit(dbus.ObjectPath(update1.Path), update1.Interface+"."+update1.SignalStatusUpdate,
		int64(1700000000), 0.0, op, version, int64(0)); err != nil {
		t.Fatal(err)
	}
	b.mon.Wait(t, "StatusUpdate "+version, func(m *dbus.Message) bool {
		return m.Type == dbus.TypeSignal && len(m.Body) == 5 && m.Body[3] == version
	})
}

// forge is the repro: user nobody sends StatusUpdate(op, version),
// broadcast (dest "") or unicast to dest. It returns the forger's name.
func (b *policyBus) forge(t *testing.T, dest, op, version string) string {
	t.Helper()
	return b.mon.EmitAs(t, "nobody", b.addr, dest, dbus.ObjectPath(update1.Path), update1.Interface, update1.SignalStatusUpdate,
		"xdssx", "1700000000", "0", op, version, "1")
}

// waitOwnerGone waits until the bus announced that name left
// com.coreos.update1.
func (b *policyBus) waitOwnerGone(t *testing.T, name string) {
	t.Helper()
	b.mon.Wait(t, "NameOwnerChanged "+name+" → none", func(m *dbus.Message) bool {
		return m.Type == dbus.TypeSignal && len(m.Body) == 3 &&
			m.Body[0] == update1.Name && m.Body[1] == name && m.Body[2] == ""
	})
}

// startManagerOnBus runs `update_engine_reboot_manager run` (Main) with strategy
// reboot against b until the test ends. It returns the manager's unique
// name (from its first GetStatus call, which the monitor saw), its state
// file and its log.
func startManagerOnBus(t *testing.T, b *policyBus) (name, statePath string, log *syncBuffer) {
	t.Helper()
	dir := t.TempDir()
	coordPath := filepath.Join(dir, "coordinator.conf")
	statePath = filepath.Join(dir, "state.json")
	log = &syncBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"run", "-bus", b.addr, "-config", filepath.Join(dir, "update.conf"),
			"-strategy", "reboot", "-state-file", statePath, "-coordinator-file", coordPath,
			"-utmp", filepath.Join(dir, "utmp"), "-warn-delay", "0"}, io.Discard, log)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("run exited %d:\n%s", code, log.String())
		}
		t.Logf("manager log:\n%s", log.String())
	})
	waitFor(t, "STATE=running", func() bool { return fileHas(coordPath, "STATE=running") })
	msg := b.mon.Wait(t, "the manager's GetStatus", func(m *dbus.Message) bool {
		member, _ := m.Headers[dbus.FieldMember].Value().(string)
		return m.Type == dbus.TypeMethodCall && member == "GetStatus"
	})
	name, _ = msg.Headers[dbus.FieldSender].Value().(string)
	return name, statePath, log
}

// TestManagerIgnoresForgedStatusUpdate: update_engine is IDLE and the
// reboot manager command runs; nobody
// broadcasts the forged UPDATED_NEED_REBOOT and unicasts it to the
// manager (a match rule does not filter unicast signals); then the real
// owner sends a NEED_REBOOT signal its GetStatus contradicts. No reboot.
// Only a NEED_REBOOT that GetStatus confirms reboots, for its version.
func TestManagerIgnoresForgedStatusUpdate(t *testing.T) {
	b := startPolicyBus(t)
	ownerConn := b.connect(t)
	_, eng := b.serve(t, ownerConn, update1.StatusIdle, "1.0.0")
	me, statePath, log := startManagerOnBus(t, b)

	b.forge(t, "", update1.StatusUpdatedNeedReboot, "9999.0.0")
	b.forge(t, me, update1.StatusUpdatedNeedReboot, "9999.0.1")
	b.emit(t, ownerConn, update1.StatusUpdatedNeedReboot, "1.0.1") // GetStatus still says IDLE
	waitFor(t, "the unconfirmed NEED_REBOOT to be handled", func() bool {
		_, r := b.logind.counts()
		return r > 0 || strings.Contains(log.String(), "GetStatus says "+update1.StatusIdle)
	})
	if _, r := b.logind.counts(); r != 0 || strings.Contains(log.String(), "needs a reboot") {
		in, _ := LoadIntent(statePath)
		t.Fatalf("rebooted (%d logind Reboot calls, intent %+v) on a forged or unconfirmed StatusUpdate", r, in)
	}
	if !strings.Contains(log.String(), "9999.0.1") {
		t.Errorf("the forged unicast StatusUpdate was not reported as ignored")
	}

	eng.set(update1.StatusUpdatedNeedReboot, "2.0.0")
	b.emit(t, ownerConn, update1.StatusUpdatedNeedReboot, "2.0.0")
	b.waitReboot(t, statePath, "2.0.0")
}

// waitReboot waits for one logind Reboot call, made for version.
func (b *policyBus) waitReboot(t *testing.T, statePath, version string) {
	t.Helper()
	waitFor(t, "Reboot call", func() bool { _, r := b.logind.counts(); return r == 1 })
	if in, err := LoadIntent(statePath); err != nil || in.Version != version {
		t.Fatalf("rebooted for %+v, %v; want version %s", in, err, version)
	}
}

// TestManagerFollowsNewOwner: update_engine exits (its connection is gone)
// and a new one starts already in UPDATED_NEED_REBOOT. A signal the new
// process sent before it owned the name is ignored; its GetStatus, asked
// when NameOwnerChanged reports it, drives the reboot.
func TestManagerFollowsNewOwner(t *testing.T) {
	b := startPolicyBus(t)
	oldConn := b.connect(t)
	b.serve(t, oldConn, update1.StatusIdle, "1.0.0")
	_, statePath, _ := startManagerOnBus(t, b)

	oldName := oldConn.Names()[0]
	oldConn.Close()
	b.waitOwnerGone(t, oldName)
	newConn := b.connect(t)
	b.emit(t, newConn, update1.StatusUpdatedNeedReboot, "3.0.0-early") // not the owner yet
	b.serve(t, newConn, update1.StatusUpdatedNeedReboot, "3.0.0")
	b.waitReboot(t, statePath, "3.0.0") // from the new owner's GetStatus
}

// TestWatchFollowsOwner checks the watch itself, signal by signal (a queue
// deep enough that nothing is coalesced): forgeries by nobody, broadcast
// and unicast, and a forged NameOwnerChanged naming the forger are
// ignored; when the owner releases the name, its later signals and those
// a new process sent before owning the name are ignored; the new owner's
// GetStatus is delivered when it takes the name; a NEED_REBOOT signal
// delivers what GetStatus says.
func TestWatchFollowsOwner(t *testing.T) {
	b := startPolicyBus(t)
	aConn := b.connect(t)
	aSrv, _ := b.serve(t, aConn, update1.StatusIdle, "1.0.0")
	conn := b.connect(t)
	var log syncBuffer
	ue := update1.NewClient(conn)
	ue.Queue = 64
	ue.Logf = func(format string, args ...any) { fmt.Fprintf(&log, format+"\n", args...) }
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ch, err := ue.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	me := conn.Names()[0]
	want := func(op, version string) {
		t.Helper()
		select {
		case st, ok := <-ch:
			if !ok || st.CurrentOperation != op || st.NewVersion != version {
				t.Fatalf("got %+v (open %v), want %s %s", st, ok, op, version)
			}
		case <-ctx.Done():
			t.Fatalf("no status; want %s %s", op, version)
		}
	}

	b.forge(t, "", "UPDATE_STATUS_DOWNLOADING", "forged-1")
	b.forge(t, me, "UPDATE_STATUS_DOWNLOADING", "forged-2")
	// A forged NameOwnerChanged handing the name to the next forger (the
	// bus numbers connections in order), then a signal from that forger.
	noc := b.mon.EmitAs(t, "nobody", b.addr, me, "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameOwnerChanged",
		"sss", update1.Name, aConn.Names()[0], nextName(t, b.addr))
	if next := b.forge(t, me, "UPDATE_STATUS_DOWNLOADING", "forged-3"); next != nextNameAfter(t, noc) {
		t.Fatalf("forger got %s, want %s as the forged NameOwnerChanged said", next, nextNameAfter(t, noc))
	}
	b.emit(t, aConn, "UPDATE_STATUS_VERIFYING", "a-1")
	want("UPDATE_STATUS_VERIFYING", "a-1")

	// A releases the name but stays connected; B takes it.
	aSrv.Close()
	b.waitOwnerGone(t, aConn.Names()[0])
	b.emit(t, aConn, "UPDATE_STATUS_DOWNLOADING", "a-stale")
	bConn := b.connect(t)
	b.emit(t, bConn, "UPDATE_STATUS_DOWNLOADING", "b-early")
	_, bEng := b.serve(t, bConn, "UPDATE_STATUS_DOWNLOADING", "b-get")
	want("UPDATE_STATUS_DOWNLOADING", "b-get")
	b.emit(t, aConn, "UPDATE_STATUS_DOWNLOADING", "a-stale-2")
	b.emit(t, bConn, "UPDATE_STATUS_FINALIZING", "b-1")
	want("UPDATE_STATUS_FINALIZING", "b-1")

	// The owner's NEED_REBOOT signal is replaced by its GetStatus answer.
	bEng.set("UPDATE_STATUS_FINALIZING", "b-2-get")
	b.emit(t, bConn, update1.StatusUpdatedNeedReboot, "b-2")
	want("UPDATE_STATUS_FINALIZING", "b-2-get")
	bEng.set(update1.StatusUpdatedNeedReboot, "b-3")
	b.emit(t, bConn, update1.StatusUpdatedNeedReboot, "b-3")
	want(update1.StatusUpdatedNeedReboot, "b-3")
	// Broadcasts from others never reach us (the match rule names the
	// owner); unicast ones do and are dropped in process.
	for _, v := range []string{"forged-2", "forged-3"} {
		if !strings.Contains(log.String(), v) {
			t.Errorf("ignoring the unicast %s was not logged", v)
		}
	}
}

// nextName predicts the unique name of the connection after next: the bus
// numbers connections in order, and the test makes no other connection in
// between.
func nextName(t *testing.T, addr string) string {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	me := conn.Names()[0]
	conn.Close()
	// Our probe was :1.N; busctl sending the NameOwnerChanged is :1.N+1;
	// the forger after it :1.N+2.
	return nextNameAfter(t, nextNameAfter(t, me))
}

// nextNameAfter returns the unique name the bus gives after name.
func nextNameAfter(t *testing.T, name string) string {
	t.Helper()
	var major, minor int
	if _, err := fmt.Sscanf(name, ":%d.%d", &major, &minor); err != nil {
		t.Fatalf("unique name %q: %v", name, err)
	}
	return fmt.Sprintf(":%d.%d", major, minor+1)
}
