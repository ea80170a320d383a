package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/abupdate/update_engine/internal/dbusapi"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/update1"
)

// scriptEngine answers GetStatus from a script: after AttemptUpdate each
// Status call moves one step along steps, then stays on the last.
type scriptEngine struct {
	mu      sync.Mutex // guards the fields below
	cur     update1.Status
	steps   []update1.Status
	detail  update1.Detail
	started bool
	resets  int
	channel string
	reqs    []dbusapi.UpdateRequest
}

func (e *scriptEngine) Status() update1.Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started && len(e.steps) > 0 {
		e.cur, e.steps = e.steps[0], e.steps[1:]
	}
	return e.cur
}
func (e *scriptEngine) Detail() update1.Detail {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := e.detail
	d.Status = e.cur
	return d
}
func (e *scriptEngine) AttemptUpdate(_ context.Context, r dbusapi.UpdateRequest) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reqs = append(e.reqs, r)
	e.started = true
	return nil
}
func (e *scriptEngine) ResetStatus(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resets++
	if e.cur.CurrentOperation != "UPDATE_STATUS_IDLE" && e.cur.CurrentOperation != "UPDATE_STATUS_UPDATED_NEED_REBOOT" {
		return errors.New("engine: busy")
	}
	return nil
}
func (e *scriptEngine) AttemptRollback(context.Context, bool) error {
	return errors.New("engine: no other slot")
}
func (e *scriptEngine) SetChannel(_ context.Context, ch string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.channel = ch
	return nil
}

func idle() update1.Status {
	return update1.Status{CurrentOperation: "UPDATE_STATUS_IDLE", NewVersion: "0.0.0"}
}

func serve(t *testing.T, eng *scriptEngine) (string, *dbusapi.Server) {
	t.Helper()
	addr := testenv.DBus(t)
	return addr, serveOn(t, addr, eng)
}

// serveOn exports eng on the bus at addr.
func serveOn(t *testing.T, addr string, eng *scriptEngine) *dbusapi.Server {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	srv, err := dbusapi.Export(t.Context(), conn, eng, dbusapi.Options{AllowUsers: []uint32{uint32(os.Getuid())}}) // the test itself may be unprivileged
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func run(ctx context.Context, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestStatusAndPriority(t *testing.T) {
	eng := &scriptEngine{cur: update1.Status{LastCheckedTime: 1732579200, Progress: 0, CurrentOperation: "UPDATE_STATUS_UPDATED_NEED_REBOOT", NewVersion: "3850.0.0", NewSize: 461373440}}
	addr, _ := serve(t, eng)
	const want = "LAST_CHECKED_TIME=1732579200\nPROGRESS=0.000000\nCURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT\nNEW_VERSION=3850.0.0\nNEW_SIZE=461373440\n"
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"single dash", []string{"-status", "-bus", addr}, 0, want, ""},
		{"double dash", []string{"--status", "--bus=" + addr}, 0, want, ""},
		{"status beats check_for_update", []string{"-check_for_update", "-status", "--bus", addr}, 0, want, ""},
		{"reset_status beats status", []string{"-status", "-reset_status", "--bus", addr}, 0, "", ""},
		{"no action", []string{"--bus", addr}, 0, "", "Done.\n"},
		{"logtostderr accepted", []string{"-logtostderr", "--bus", addr}, 0, "", "Done.\n"},
		{"unknown flag", []string{"-frobnicate"}, 2, "", "flag provided but not defined"},
		{"stray argument", []string{"status"}, 2, "", "unexpected argument"},
		{"slots without disk", []string{"--slots"}, 2, "", "need --disk DEV"},
		{"help", []string{"--help"}, 0, "", "-watch_for_updates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := run(t.Context(), tt.args...)
			if code != tt.wantCode || out != tt.wantOut || !strings.Contains(errs, tt.wantErr) {
				t.Fatalf("code=%d out=%q err=%q; want code=%d out=%q err~%q", code, out, errs, tt.wantCode, tt.wantOut, tt.wantErr)
			}
		})
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if eng.resets != 1 {
		t.Fatalf("ResetStatus calls = %d, want 1", eng.resets)
	}
}

func TestStatusEnvAddress(t *testing.T) {
	eng := &scriptEngine{cur: idle()}
	addr, _ := serve(t, eng)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", addr)
	code, out, errs := run(t.Context(), "-status")
	if code != 0 || !strings.Contains(out, "CURRENT_OP=UPDATE_STATUS_IDLE\n") {
		t.Fatalf("code=%d out=%q err=%q", code, out, errs)
	}
}

func TestJSON(t *testing.T) {
	eng := &scriptEngine{cur: idle(), detail: update1.Detail{Channel: "beta", LastError: 10, LastErrorName: "PayloadHashMismatchError(10)"}}
	addr, _ := serve(t, eng)
	for _, args := range [][]string{{"--json"}, {"-status", "--json"}} {
		code, out, errs := run(t.Context(), append(args, "--bus", addr)...)
		if code != 0 || !strings.Contains(out, `"channel":"beta"`) || !strings.Contains(out, `"current_operation":"UPDATE_STATUS_IDLE"`) || !strings.Contains(out, `"last_error_code":10`) {
			t.Fatalf("%v: code=%d out=%q err=%q", args, code, out, errs)
		}
	}
}

func TestNotRunning(t *testing.T) {
	addr := testenv.DBus(t)
	tests := []struct {
		name    string
		bus     string
		wantErr string
	}{
		{"no daemon on the bus", addr, "update_engine is not running"},
		{"no bus", "unix:path=" + filepath.Join(t.TempDir(), "none"), "cannot reach the D-Bus bus"},
	}
	var slept []time.Duration
	saved := sleep
	sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	t.Cleanup(func() { sleep = saved })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slept = nil
			code, _, errs := run(t.Context(), "-status", "--bus", tt.bus)
			if code != exitFailed || !strings.Contains(errs, tt.wantErr) {
				t.Fatalf("code=%d err=%q; want %d, %q", code, errs, exitFailed, tt.wantErr)
			}
			// Flatcar: 4 tries 10 s apart for a missing daemon; no bus is final.
			want := []time.Duration{10 * time.Second, 10 * time.Second, 10 * time.Second}
			if tt.bus != addr {
				want = nil
			}
			if !slices.Equal(slept, want) {
				t.Fatalf("slept %v, want %v", slept, want)
			}
		})
	}
}

// A daemon that comes up while the client retries is used.
func TestRetryUntilDaemon(t *testing.T) {
	addr := testenv.DBus(t)
	eng := &scriptEngine{cur: idle()}
	tries := 0
	saved := sleep
	sleep = func(_ context.Context, d time.Duration) error {
		if tries++; tries == 2 {
			serveOn(t, addr, eng)
		}
		return nil
	}
	t.Cleanup(func() { sleep = saved })
	code, out, errs := run(t.Context(), "-status", "--bus", addr)
	if code != 0 || tries != 2 || !strings.Contains(out, "CURRENT_OP=UPDATE_STATUS_IDLE") {
		t.Fatalf("code=%d tries=%d out=%q err=%q", code, tries, out, errs)
	}
}

// ChromeOS request flags are forwarded (AttemptUpdate(s,s)); glog flags
// are accepted.
func TestRequestFlags(t *testing.T) {
	eng := &scriptEngine{cur: idle()}
	addr, _ := serve(t, eng)
	for _, tc := range []struct {
		args []string
		want dbusapi.UpdateRequest
	}{
		{[]string{"-check_for_update", "-v", "1", "-logtostderr", "--alsologtostderr", "-minloglevel=0", "-interactive"}, dbusapi.UpdateRequest{}},
		{[]string{"-check_for_update", "-omaha_url", "http://127.0.0.1:9/update", "-app_version", "ForcedUpdate"},
			dbusapi.UpdateRequest{AppVersion: "ForcedUpdate", OmahaURL: "http://127.0.0.1:9/update"}},
		{[]string{"-update", "--omaha_url=http://127.0.0.1:9/u", "--progress", "plain", "--poll-interval", "1ms"}, dbusapi.UpdateRequest{OmahaURL: "http://127.0.0.1:9/u"}},
	} {
		eng.mu.Lock()
		eng.reqs = nil
		eng.mu.Unlock()
		code, _, errs := run(t.Context(), append(tc.args, "--bus", addr)...)
		eng.mu.Lock()
		reqs := eng.reqs
		eng.mu.Unlock()
		if code != 0 || len(reqs) != 1 || reqs[0] != tc.want {
			t.Fatalf("%v: code=%d err=%q requests %+v, want %+v", tc.args, code, errs, reqs, tc.want)
		}
	}
	if code, _, errs := run(t.Context(), "-check_for_update", "-interactive=false", "--bus", addr); code != exitUsage || !strings.Contains(errs, "interactive") {
		t.Fatalf("-interactive=false: code=%d err=%q", code, errs)
	}
}

func TestRefusedCalls(t *testing.T) {
	eng := &scriptEngine{cur: update1.Status{CurrentOperation: "UPDATE_STATUS_DOWNLOADING"}}
	addr, _ := serve(t, eng)
	for _, args := range [][]string{{"-reset_status"}, {"--rollback"}} {
		code, _, errs := run(t.Context(), append(args, "--bus", addr)...)
		if code != exitFailed || !strings.Contains(errs, "engine:") {
			t.Fatalf("%v: code=%d err=%q, want 1 with the engine's reason", args, code, errs)
		}
	}
	code, _, errs := run(t.Context(), "--channel", "alpha", "--bus", addr)
	eng.mu.Lock()
	ch := eng.channel
	eng.mu.Unlock()
	if code != 0 || ch != "alpha" {
		t.Fatalf("--channel: code=%d err=%q channel=%q", code, errs, ch)
	}
}

func updateScript() []update1.Status {
	return []update1.Status{
		{CurrentOperation: "UPDATE_STATUS_CHECKING_FOR_UPDATE", NewVersion: "0.0.0"},
		{CurrentOperation: "UPDATE_STATUS_DOWNLOADING", Progress: 0.5, NewVersion: "3850.0.0", NewSize: 1 << 20},
		{CurrentOperation: "UPDATE_STATUS_FINALIZING", Progress: 1, NewVersion: "3850.0.0", NewSize: 1 << 20},
		{LastCheckedTime: 5, CurrentOperation: "UPDATE_STATUS_UPDATED_NEED_REBOOT", NewVersion: "3850.0.0", NewSize: 1 << 20},
	}
}

func TestUpdatePlain(t *testing.T) {
	eng := &scriptEngine{cur: idle(), steps: updateScript()}
	addr, _ := serve(t, eng)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	code, out, errs := run(ctx, "-update", "--bus", addr, "--poll-interval", "5ms", "--progress", "plain")
	if code != 0 {
		t.Fatalf("code=%d err=%q", code, errs)
	}
	blocks := strings.Count(out, "LAST_CHECKED_TIME=")
	if blocks != 4 || !strings.HasSuffix(out, "CURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT\nNEW_VERSION=3850.0.0\nNEW_SIZE=1048576\n") ||
		!strings.Contains(out, "PROGRESS=0.500000\n") {
		t.Fatalf("got %d blocks:\n%s", blocks, out)
	}
	if !strings.Contains(errs, "reboot needed") {
		t.Fatalf("stderr = %q", errs)
	}
}

func TestUpdateBar(t *testing.T) {
	eng := &scriptEngine{cur: idle(), steps: updateScript()}
	addr, srv := serve(t, eng)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_ = srv.Emit(update1.Status{CurrentOperation: "UPDATE_STATUS_DOWNLOADING", Progress: 0.25})
	code, out, errs := run(ctx, "-update", "--bus", addr, "--poll-interval", "5ms", "--progress", "bar")
	if code != 0 {
		t.Fatalf("code=%d err=%q", code, errs)
	}
	if !strings.Contains(out, "\r[###############---------------]  50.0%  DOWNLOADING") || !strings.Contains(out, "CURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT\n") {
		t.Fatalf("bar output:\n%q", out)
	}
}

func TestUpdateNoUpdateAndFailure(t *testing.T) {
	tests := []struct {
		name    string
		detail  update1.Detail
		wantErr string
	}{
		{"no update", update1.Detail{}, "No update available."},
		{"failed", update1.Detail{LastError: 10, LastErrorName: "PayloadHashMismatchError(10)"}, "Update failed: PayloadHashMismatchError(10)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eng := &scriptEngine{cur: idle(), detail: tt.detail, steps: []update1.Status{
				{CurrentOperation: "UPDATE_STATUS_CHECKING_FOR_UPDATE", NewVersion: "0.0.0"}, idle()}}
			addr, _ := serve(t, eng)
			code, _, errs := run(t.Context(), "-update", "--bus", addr, "--poll-interval", "5ms", "--progress", "plain")
			if code != 0 || !strings.Contains(errs, tt.wantErr) {
				t.Fatalf("code=%d err=%q; want 0 and %q (Flatcar exits 0 on IDLE)", code, errs, tt.wantErr)
			}
		})
	}
}

func TestWatch(t *testing.T) {
	eng := &scriptEngine{cur: idle()}
	addr, srv := serve(t, eng)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out syncBuffer
	var errb bytes.Buffer
	done := make(chan int)
	go func() { done <- Main(ctx, []string{"-watch_for_updates", "--bus", addr}, &out, &errb) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(out.String(), "CURRENT_OP=UPDATE_STATUS_VERIFYING") {
		select {
		case <-tick.C:
			_ = srv.Emit(update1.Status{CurrentOperation: "UPDATE_STATUS_VERIFYING", NewVersion: "1.0.0"})
		case <-ctx.Done():
			t.Fatalf("no signal printed: %q", out.String())
		}
	}
	cancel()
	if code := <-done; code != exitFailed && code != exitOK {
		t.Fatalf("code = %d", code)
	}
}

// TestWatchIgnoresForgedSignals is issue 13 item 1 against the client, on
// a system-like bus with the shipped policy: user nobody broadcasts
// UPDATED_NEED_REBOOT while update_engine is idle; -watch_for_updates must
// not print it, only what the owner sends after it.
func TestWatchIgnoresForgedSignals(t *testing.T) {
	policy, err := filepath.Abs("../../dist/com.coreos.update1.conf")
	if err != nil {
		t.Fatal(err)
	}
	addr := testenv.SystemDBus(t, policy)
	mon := testenv.Monitor(t, addr)
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	srv, err := dbusapi.Export(t.Context(), conn, &scriptEngine{cur: idle()}, dbusapi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int)
	go func() { done <- Main(ctx, []string{"-watch_for_updates", "--bus", addr}, &out, &errb) }()
	for !strings.Contains(errb.String(), "Watching for StatusUpdate") {
		select {
		case code := <-done:
			t.Fatalf("client exited with %d: %s", code, errb.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	mon.EmitAs(t, "nobody", addr, "", update1.Path, update1.Interface, update1.SignalStatusUpdate,
		"xdssx", "1700000000", "0", "UPDATE_STATUS_UPDATED_NEED_REBOOT", "9999.0.0", "1")
	// Routed after the forgery (the monitor saw it), so printed after it
	// if the forgery were believed.
	if err := srv.Emit(update1.Status{CurrentOperation: "UPDATE_STATUS_VERIFYING", NewVersion: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(out.String(), "CURRENT_OP=UPDATE_STATUS_VERIFYING") {
		select {
		case <-ctx.Done():
			t.Fatalf("the owner's signal was not printed: %q", out.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	<-done
	if got := out.String(); !strings.HasPrefix(got, "LAST_CHECKED_TIME=0\nPROGRESS=0.000000\nCURRENT_OP=UPDATE_STATUS_VERIFYING\n") || strings.Contains(got, "9999.0.0") {
		t.Fatalf("printed a forged StatusUpdate:\n%s", got)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu  sync.Mutex // guards b
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func TestSlots(t *testing.T) {
	disk := testenv.NewDisk(t, testenv.DiskSpec{})
	code, out, errs := run(t.Context(), "--disk", disk, "--slots")
	if code != 0 {
		t.Fatalf("code=%d err=%q", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "SLOT") || !strings.Contains(lines[1], "USR-A") || !strings.Contains(lines[2], "USR-B") {
		t.Fatalf("table:\n%s", out)
	}
	if code, _, errs := run(t.Context(), "--disk", filepath.Join(t.TempDir(), "none.img"), "--slots"); code != exitFailed || errs == "" {
		t.Fatalf("missing disk: code=%d err=%q", code, errs)
	}
}

func TestSimulateBoot(t *testing.T) {
	disk := testenv.NewDisk(t, testenv.DiskSpec{})
	// A fresh disk boots A (successful); B has nothing.
	for i := 0; i < 2; i++ {
		code, out, errs := run(t.Context(), "--disk", disk, "--simulate-boot")
		if code != 0 || out != "A\n" {
			t.Fatalf("boot %d: code=%d out=%q err=%q", i, code, out, errs)
		}
	}
}
