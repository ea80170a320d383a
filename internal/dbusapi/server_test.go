package dbusapi

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/update1"
)

// testEngine is a minimal real Engine: a state value behind a mutex, with
// the Flatcar ResetStatus rule.
type testEngine struct {
	mu       sync.Mutex // guards the fields below
	st       update1.Status
	channel  string
	requests []UpdateRequest
	rollback []bool
}

func newTestEngine() *testEngine {
	return &testEngine{st: update1.Status{CurrentOperation: "UPDATE_STATUS_IDLE", NewVersion: "0.0.0"}, channel: "stable"}
}

func (e *testEngine) Status() update1.Status { e.mu.Lock(); defer e.mu.Unlock(); return e.st }
func (e *testEngine) Detail() update1.Detail {
	e.mu.Lock()
	defer e.mu.Unlock()
	return update1.Detail{Status: e.st, Channel: e.channel, LastError: 10, LastErrorName: "PayloadHashMismatchError(10)", CanRollback: true}
}
func (e *testEngine) AttemptUpdate(ctx context.Context, req UpdateRequest) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests = append(e.requests, req)
	return nil
}
func (e *testEngine) ResetStatus(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch e.st.CurrentOperation {
	case "UPDATE_STATUS_IDLE":
		return nil
	case "UPDATE_STATUS_UPDATED_NEED_REBOOT":
		e.st = update1.Status{CurrentOperation: "UPDATE_STATUS_IDLE", NewVersion: "0.0.0"}
		return nil
	}
	return errors.New("engine: cannot reset while " + e.st.CurrentOperation)
}
func (e *testEngine) AttemptRollback(ctx context.Context, powerwash bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rollback = append(e.rollback, powerwash)
	return nil
}
func (e *testEngine) SetChannel(ctx context.Context, ch string) error {
	if ch == "" {
		return errors.New("engine: empty channel")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.channel = ch
	return nil
}
func (e *testEngine) set(st update1.Status) { e.mu.Lock(); e.st = st; e.mu.Unlock() }

// startServer exports a testEngine on a private bus and returns the bus
// address, the engine and the server.
func startServer(t *testing.T) (string, *testEngine, *Server) {
	t.Helper()
	addr := testenv.DBus(t)
	ctx := t.Context()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	eng := newTestEngine()
	srv, err := Export(ctx, conn, eng, Options{AllowUsers: []uint32{uint32(os.Getuid())}}) // the test itself may be unprivileged
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return addr, eng, srv
}

func dial(t *testing.T, addr string) *update1.Client {
	t.Helper()
	c, err := update1.Dial(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClientCalls(t *testing.T) {
	addr, eng, _ := startServer(t)
	c := dial(t, addr)
	ctx := t.Context()

	want := update1.Status{LastCheckedTime: 1700000000, Progress: 0.25, CurrentOperation: "UPDATE_STATUS_DOWNLOADING", NewVersion: "3850.0.0", NewSize: 123456789}
	eng.set(want)
	got, err := c.GetStatus(ctx)
	if err != nil || got != want {
		t.Fatalf("GetStatus = %+v, %v; want %+v", got, err, want)
	}
	if err := c.AttemptUpdate(ctx); err != nil {
		t.Fatalf("AttemptUpdate: %v", err)
	}
	// ResetStatus while downloading is refused with the ChromeOS error name.
	err = c.ResetStatus(ctx)
	if !errors.Is(err, update1.ErrFailed) || !strings.Contains(err.Error(), "cannot reset while UPDATE_STATUS_DOWNLOADING") {
		t.Fatalf("ResetStatus while downloading = %v, want ErrFailed with the engine's message", err)
	}
	eng.set(update1.Status{CurrentOperation: "UPDATE_STATUS_UPDATED_NEED_REBOOT", NewVersion: "3850.0.0", NewSize: 5})
	if err := c.ResetStatus(ctx); err != nil {
		t.Fatalf("ResetStatus from UPDATED_NEED_REBOOT: %v", err)
	}
	if st, _ := c.GetStatus(ctx); st.CurrentOperation != "UPDATE_STATUS_IDLE" || st.NewVersion != "0.0.0" {
		t.Fatalf("after reset: %+v", st)
	}
	d, err := c.Detail(ctx)
	if err != nil || d.Channel != "stable" || d.LastError != 10 || !d.CanRollback {
		t.Fatalf("Detail = %+v, %v", d, err)
	}
	if err := c.SetChannel(ctx, "beta"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetChannel(ctx, ""); !errors.Is(err, update1.ErrFailed) {
		t.Fatalf("SetChannel(\"\") = %v, want ErrFailed", err)
	}
	if err := c.AttemptRollback(ctx, true); err != nil {
		t.Fatal(err)
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if eng.channel != "beta" || len(eng.rollback) != 1 || !eng.rollback[0] || len(eng.requests) != 1 {
		t.Fatalf("engine saw channel=%q rollback=%v requests=%v", eng.channel, eng.rollback, eng.requests)
	}
}

func TestChromeOSNames(t *testing.T) {
	addr, eng, _ := startServer(t)
	c := dial(t, addr)
	obj := c.Conn().Object(update1.ChromeOSName, update1.ChromeOSPath)
	if err := obj.Call(update1.ChromeOSInterface+".AttemptUpdate", 0, "1.2.3", "http://127.0.0.1:1/v1/update/").Err; err != nil {
		t.Fatalf("ChromeOS AttemptUpdate(s,s): %v", err)
	}
	var st update1.Status
	if err := obj.Call(update1.ChromeOSInterface+".GetStatus", 0).Store(&st.LastCheckedTime, &st.Progress, &st.CurrentOperation, &st.NewVersion, &st.NewSize); err != nil {
		t.Fatal(err)
	}
	if st.CurrentOperation != "UPDATE_STATUS_IDLE" {
		t.Fatalf("ChromeOS GetStatus = %+v", st)
	}
	eng.set(update1.Status{CurrentOperation: "UPDATE_STATUS_FINALIZING"})
	err := obj.Call(update1.ChromeOSInterface+".ResetStatus", 0).Err
	var de dbus.Error
	if !errors.As(err, &de) || de.Name != update1.ErrorFailed {
		t.Fatalf("ChromeOS ResetStatus while finalizing = %v, want %s", err, update1.ErrorFailed)
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if len(eng.requests) != 1 || eng.requests[0].AppVersion != "1.2.3" || eng.requests[0].OmahaURL != "http://127.0.0.1:1/v1/update/" {
		t.Fatalf("requests = %+v", eng.requests)
	}
}

func TestBadCalls(t *testing.T) {
	addr, _, _ := startServer(t)
	c := dial(t, addr)
	tests := []struct {
		name     string
		path     dbus.ObjectPath
		method   string
		args     []any
		wantName string
	}{
		{"args to a no-arg method", update1.Path, update1.Interface + ".AttemptUpdate", []any{"x"}, "org.freedesktop.DBus.Error.InvalidArgs"},
		{"wrong arg type", update1.Path, update1.OwnInterface + ".AttemptRollback", []any{"yes"}, "org.freedesktop.DBus.Error.InvalidArgs"},
		{"missing args", update1.ChromeOSPath, update1.ChromeOSInterface + ".AttemptUpdate", nil, "org.freedesktop.DBus.Error.InvalidArgs"},
		{"unknown method", update1.Path, update1.Interface + ".Reboot", nil, "org.freedesktop.DBus.Error.UnknownMethod"},
		{"ChromeOS-only method on CoreOS", update1.Path, update1.Interface + ".GetStatusAdvanced", nil, "org.freedesktop.DBus.Error.UnknownMethod"},
		{"unknown interface", update1.Path, "org.example.Nope.GetStatus", nil, "org.freedesktop.DBus.Error.UnknownInterface"},
		{"unknown object", "/com/coreos/update1/Manager", update1.Interface + ".GetStatus", nil, "org.freedesktop.DBus.Error.Unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Conn().Object(update1.Name, tt.path).Call(tt.method, 0, tt.args...).Err
			var de dbus.Error
			if !errors.As(err, &de) || !strings.HasPrefix(de.Name, tt.wantName) {
				t.Fatalf("err = %v, want D-Bus error %s", err, tt.wantName)
			}
		})
	}
	// The daemon still answers.
	if _, err := c.GetStatus(t.Context()); err != nil {
		t.Fatalf("GetStatus after bad calls: %v", err)
	}
}

func TestNotRunning(t *testing.T) {
	addr := testenv.DBus(t)
	c := dial(t, addr)
	_, err := c.GetStatus(t.Context())
	if !errors.Is(err, update1.ErrNotRunning) {
		t.Fatalf("GetStatus with no daemon = %v, want ErrNotRunning", err)
	}
	_, err = update1.Dial(t.Context(), "unix:path="+filepath.Join(t.TempDir(), "nobus"))
	if !errors.Is(err, update1.ErrNoBus) {
		t.Fatalf("Dial(no socket) = %v, want ErrNoBus", err)
	}
}

func TestSecondServerRefused(t *testing.T) {
	addr, _, _ := startServer(t)
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := Export(t.Context(), conn, newTestEngine(), Options{}); err == nil || !strings.Contains(err.Error(), "already owned") {
		t.Fatalf("second Export = %v, want already owned", err)
	}
}

// TestWatchAndSignals: Emit's signals reach a watching client in order
// (the watch is pkg/rebootmgr's, which update_engine_client uses).
func TestWatchAndSignals(t *testing.T) {
	addr, _, srv := startServer(t)
	c := dial(t, addr)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ue := update1.NewClient(c.Conn())
	ue.Queue = 16
	ch, err := ue.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A raw, badly typed StatusUpdate from another client is dropped.
	other, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Emit(update1.Path, update1.Interface+"."+update1.SignalStatusUpdate, "bogus"); err != nil {
		t.Fatal(err)
	}
	want := []update1.Status{
		{CurrentOperation: "UPDATE_STATUS_CHECKING_FOR_UPDATE", NewVersion: "0.0.0"},
		{CurrentOperation: "UPDATE_STATUS_DOWNLOADING", Progress: 0.5, NewVersion: "2.0.0", NewSize: 10},
	}
	for _, st := range want {
		if err := srv.Emit(st); err != nil {
			t.Fatal(err)
		}
	}
	for i, w := range want {
		select {
		case got := <-ch:
			if update1.Status(got) != w {
				t.Fatalf("signal %d = %+v, want %+v", i, got, w)
			}
		case <-ctx.Done():
			t.Fatalf("signal %d not received", i)
		}
	}
	cancel()
	for range ch {
	}
}

// TestBusctlAndMonitor talks to the service with the system tools:
// busctl call sees the xdssx reply, introspection lists the compatible
// members, and dbus-monitor sees StatusUpdate from both object paths.
func TestBusctlAndMonitor(t *testing.T) {
	testenv.RequireTool(t, "busctl", "dbus-monitor")
	addr, eng, srv := startServer(t)
	eng.set(update1.Status{LastCheckedTime: 42, Progress: 1, CurrentOperation: "UPDATE_STATUS_UPDATED_NEED_REBOOT", NewVersion: "3850.0.0", NewSize: 99})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	out, err := exec.CommandContext(ctx, "busctl", "--address="+addr, "call", update1.Name, update1.Path, update1.Interface, "GetStatus").CombinedOutput()
	if err != nil {
		t.Fatalf("busctl call: %v: %s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), `xdssx 42 1 "UPDATE_STATUS_UPDATED_NEED_REBOOT" "3850.0.0" 99`; got != want {
		t.Fatalf("busctl GetStatus = %q, want %q", got, want)
	}
	out, err = exec.CommandContext(ctx, "busctl", "--address="+addr, "introspect", update1.Name, update1.Path).CombinedOutput()
	if err != nil {
		t.Fatalf("busctl introspect: %v: %s", err, out)
	}
	for _, w := range []string{".AttemptUpdate", ".GetStatus", ".ResetStatus", ".StatusUpdate", "xdssx", ".GetStatusJSON", update1.OwnInterface} {
		if !strings.Contains(string(out), w) {
			t.Errorf("introspection lacks %q:\n%s", w, out)
		}
	}

	mon := exec.CommandContext(ctx, "dbus-monitor", "--address", addr, "type='signal',member='StatusUpdate'")
	stdout, err := mon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = mon.Process.Kill(); _ = mon.Wait() }()
	var buf strings.Builder
	done := make(chan struct{})
	var mu sync.Mutex // guards buf
	go func() {
		defer close(done)
		b := make([]byte, 4096)
		for {
			n, err := stdout.Read(b)
			mu.Lock()
			buf.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	// Emit until the monitor has seen both paths (it needs a moment to
	// register its match rule).
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		mu.Lock()
		s := buf.String()
		mu.Unlock()
		if strings.Contains(s, "path="+update1.Path+"; interface="+update1.Interface+"; member=StatusUpdate") &&
			strings.Contains(s, "path="+update1.ChromeOSPath+"; interface="+update1.ChromeOSInterface+"; member=StatusUpdate") &&
			strings.Contains(s, `string "UPDATE_STATUS_UPDATED_NEED_REBOOT"`) && strings.Contains(s, "int64 99") {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("dbus-monitor did not see both StatusUpdate signals:\n%s", s)
		case <-tick.C:
			if err := srv.Emit(eng.Status()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRootOnlyMethods runs dbus-send as user nobody: the Flatcar methods
// answer (the test bus has no policy), our mutating methods refuse.
func TestRootOnlyMethods(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "runuser", "dbus-send")
	addr, eng, _ := startServer(t)
	testenv.ShareSocket(t, addr)
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(t.Context(), "runuser", append([]string{"-u", "nobody", "--", "dbus-send", "--bus=" + addr, "--print-reply", "--dest=" + update1.Name, update1.Path}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(update1.Interface + ".GetStatus"); err != nil || !strings.Contains(out, "UPDATE_STATUS_IDLE") {
		t.Fatalf("GetStatus as nobody: %v: %s", err, out)
	}
	out, err := run(update1.OwnInterface+".SetChannel", "string:evil")
	if err == nil || !strings.Contains(out, update1.ErrorAccessDenied) {
		t.Fatalf("SetChannel as nobody: %v: %s; want %s", err, out, update1.ErrorAccessDenied)
	}
	if eng.Detail().Channel != "stable" {
		t.Fatal("channel changed by an unprivileged caller")
	}
}

// TestPolicyFile runs a system-type dbus-daemon with dist's policy file:
// root may own the names and call; user nobody may not send to the service
// but receives the StatusUpdate broadcast.
func TestPolicyFile(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "dbus-daemon", "runuser", "dbus-send")
	policy, err := filepath.Abs("../../dist/com.coreos.update1.conf")
	if err != nil {
		t.Fatal(err)
	}
	addr := testenv.SystemDBus(t, policy)
	ctx := t.Context()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv, err := Export(ctx, conn, newTestEngine(), Options{})
	if err != nil {
		t.Fatalf("root cannot own the names under the policy: %v", err)
	}
	defer srv.Close()
	c := dial(t, addr)
	if _, err := c.GetStatus(ctx); err != nil {
		t.Fatalf("root GetStatus under the policy: %v", err)
	}
	for _, m := range []string{update1.Interface + ".GetStatus", update1.Interface + ".AttemptUpdate", update1.OwnInterface + ".GetStatusJSON"} {
		out, err := exec.CommandContext(ctx, "runuser", "-u", "nobody", "--", "dbus-send", "--bus="+addr, "--print-reply", "--dest="+update1.Name, update1.Path, m).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "AccessDenied") {
			t.Errorf("%s as nobody: err=%v out=%s; want AccessDenied", m, err, out)
		}
	}
}
