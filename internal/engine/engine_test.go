package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/parts"
	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/pkg/gpt"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/payload"
	"github.com/abupdate/update_engine/pkg/update1"
)

const slotSize = 4 << 20

func TestFullUpdateAndRestart(t *testing.T) {
	w := newWorld(t)
	payload := payloadBytes(3<<20+123, 1)
	w.publish("p2.bin", "2.0.0", payload, nil)
	m := newMachine(t, slotSize)
	rec := &recorder{}
	cfg := m.config(t, w, rec)
	e, cancel, done := start(t, cfg)

	if err := e.AttemptUpdate(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	if s := e.Snapshot(); s.Status == update1.Idle {
		t.Fatal("AttemptUpdate returned while still IDLE; -update would stop at once")
	}
	s := waitFor(t, e, "UPDATED_NEED_REBOOT", func(s Snapshot) bool {
		return s.Status == update1.UpdatedNeedReboot || s.Status == update1.Idle && s.LastChecked != 0
	})
	if s.Status != update1.UpdatedNeedReboot {
		t.Fatalf("ended in %v: %v %s", s.Status, s.LastError, s.LastErrorMessage)
	}
	if s.NewVersion != "2.0.0" || s.NewSize != int64(len(payload)) || s.NextBootSlot != "B" {
		t.Fatalf("snapshot %+v", s)
	}
	want := []string{"UPDATE_STATUS_IDLE", "UPDATE_STATUS_CHECKING_FOR_UPDATE", "UPDATE_STATUS_UPDATE_AVAILABLE", "UPDATE_STATUS_DOWNLOADING",
		"UPDATE_STATUS_VERIFYING", "UPDATE_STATUS_FINALIZING", "UPDATE_STATUS_UPDATED_NEED_REBOOT"}
	if got := rec.statuses(); !slices.Equal(got, want) {
		t.Fatalf("status flow\n got %v\nwant %v", got, want)
	}
	// Progress signals: at least a few steps, none closer than 1 % unless
	// the status changed.
	rec.mu.Lock()
	steps := 0
	for i := 1; i < len(rec.snaps); i++ {
		a, b := rec.snaps[i-1], rec.snaps[i]
		if a.Status == update1.Downloading && b.Status == update1.Downloading {
			steps++
			if d := b.Progress - a.Progress; d < 0.01 && b.Progress < 1 {
				t.Errorf("progress signal after a %.4f step", d)
			}
		}
	}
	rec.mu.Unlock()
	if steps < 5 {
		t.Errorf("only %d progress signals during the download", steps)
	}
	if !fileEquals(t, filepath.Join(m.slots.dir, "B"), payload) {
		t.Fatal("passive slot does not hold the payload")
	}
	if m.slots.markedClosed != 0 || m.slots.open != 0 {
		t.Fatalf("passive slot marked unbootable %d times while not open (udev may remove its node then); %d writers left open", m.slots.markedClosed, m.slots.open)
	}
	if !fileEquals(t, filepath.Join(m.slots.dir, "A"), []byte("old image")) {
		t.Fatal("active slot was modified")
	}
	if got, want := eventsString(w.omaha.Events()), "3/2 previousversion=0.0.0.0, 13/1, 14/1, 3/1"; got != want {
		t.Fatalf("server saw events %q, want %q", got, want)
	}
	for _, p := range []string{cfg.MarkerPath, cfg.RebootRequiredPath} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s not written: %v", p, err)
		}
	}
	if v, _ := cfg.Prefs.GetString(KeyPreviousVersion); v != "1.0.0" {
		t.Fatalf("previous-version = %q", v)
	}
	// AttemptUpdate is ignored, ResetStatus works, state survives restart.
	if err := e.AttemptUpdate(t.Context(), ""); err != nil || e.Snapshot().Status != update1.UpdatedNeedReboot {
		t.Fatalf("AttemptUpdate in UPDATED_NEED_REBOOT: %v, %v", err, e.Snapshot().Status)
	}
	cancel()
	<-done

	// A kill between the flip and the 3/1 event leaves the event owed:
	// the restart sends it.
	setRecord(t, cfg.Prefs, func(r *Record) { r.Update.AppliedOwed = true })
	rec2 := &recorder{}
	e2, _, _ := start(t, m.config(t, w, rec2))
	<-e2.Ready() // the restored state is visible as soon as Ready
	for deadline := time.Now().Add(10 * time.Second); !strings.HasSuffix(eventsString(w.omaha.Events()), "3/1, 3/1"); {
		if time.Now().After(deadline) {
			t.Fatalf("owed 3/1 not sent after the restart: %q", eventsString(w.omaha.Events()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for deadline := time.Now().Add(10 * time.Second); owed(cfg.Prefs); {
		if time.Now().After(deadline) {
			t.Fatal("applied-event-pending still set after the event went out")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s = e2.Snapshot()
	if s.Status != update1.UpdatedNeedReboot || s.NewVersion != "2.0.0" || s.NewSize != int64(len(payload)) {
		t.Fatalf("restored snapshot %+v", s)
	}
	if err := e2.ResetStatus(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := e2.Snapshot(); s.Status != update1.Idle || s.NewVersion != "0.0.0" || s.NewSize != 0 {
		t.Fatalf("after ResetStatus: %+v", s)
	}
	if _, err := os.Stat(cfg.MarkerPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("marker still there: %v", err)
	}
	if n, _ := m.slots.NextBoot(t.Context()); n != "B" {
		t.Fatalf("ResetStatus touched the GPT: next boot %s", n)
	}
}

// A run directory that outlives a reboot (not a tmpfs) must not keep the
// engine in UPDATED_NEED_REBOOT once it runs from the new slot.
func TestStaleMarkerAfterReboot(t *testing.T) {
	w := newWorld(t)
	payload := payloadBytes(1<<20, 2)
	w.publish("p2.bin", "2.0.0", payload, nil)
	m := newMachine(t, slotSize)
	cfg := m.config(t, w, &recorder{})
	e, cancel, done := start(t, cfg)
	if err := e.AttemptUpdate(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "UPDATED_NEED_REBOOT", func(s Snapshot) bool { return s.Status == update1.UpdatedNeedReboot })
	cancel()
	<-done

	// Same slot: the update is still pending.
	e2, cancel2, done2 := start(t, m.config(t, w, &recorder{}))
	if s := waitFor(t, e2, "restored", func(s Snapshot) bool { return s.Status == update1.UpdatedNeedReboot }); s.NewVersion != "2.0.0" {
		t.Fatalf("restored %+v", s)
	}
	cancel2()
	<-done2

	// Rebooted into B: the marker is stale.
	m.slots.booted, m.version = "B", "2.0.0"
	e3, _, _ := start(t, m.config(t, w, &recorder{}))
	if s := waitFor(t, e3, "loaded", func(s Snapshot) bool { return s.BootedSlot == "B" }); s.Status != update1.Idle {
		t.Fatalf("after reboot into B: status %v, want IDLE", s.Status)
	}
	if _, err := os.Stat(cfg.MarkerPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale marker kept: %v", err)
	}
}

func TestCorruptPayloadRejected(t *testing.T) {
	w := newWorld(t)
	payload := payloadBytes(1<<20, 2)
	bad := payloadBytes(32, 3) // a wrong SHA-256
	w.publish("p2.bin", "2.0.0", payload, bad)
	m := newMachine(t, slotSize)
	e, _, _ := start(t, m.config(t, w, &recorder{}))
	if err := e.AttemptUpdate(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	s := waitFor(t, e, "idle after failure", idleAfterAttempt)
	wantCode := omaha.PayloadHashMismatchError | omaha.FlagTestOmahaURL
	if s.LastError != wantCode {
		t.Fatalf("LastError = %v, want %v", s.LastError, wantCode)
	}
	if n, _ := m.slots.NextBoot(t.Context()); n != "A" {
		t.Fatalf("flipped to %s after a bad payload", n)
	}
	if got, want := eventsString(w.omaha.Events()), fmt.Sprintf("3/2 previousversion=0.0.0.0, 13/1, 14/1, 3/0 errorcode=%d", int32(wantCode)); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(m.runDir, "update_engine_autoupdate_completed")); err == nil {
		t.Fatal("marker written after a failed update")
	}
}

func TestNoUpdate(t *testing.T) {
	w := newWorld(t)
	w.publish("p1.bin", "1.0.0", payloadBytes(1000, 4), nil) // same version
	m := newMachine(t, slotSize)
	rec := &recorder{}
	e, _, _ := start(t, m.config(t, w, rec))
	if err := e.AttemptUpdate(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	s := waitFor(t, e, "idle", idleAfterAttempt)
	if s.LastError != omaha.Success || s.NewVersion != "0.0.0" {
		t.Fatalf("snapshot %+v", s)
	}
	if got, want := rec.statuses(), []string{"UPDATE_STATUS_IDLE", "UPDATE_STATUS_CHECKING_FOR_UPDATE", "UPDATE_STATUS_IDLE"}; !slices.Equal(got, want) {
		t.Fatalf("flow %v, want %v", got, want)
	}
	recs := w.omaha.Records()
	if len(recs) != 1 || recs[0].InstallSource != "ondemandupdate" || recs[0].Track != "stable" {
		t.Fatalf("records %+v", recs)
	}
	// The second check no longer carries previousversion=0.0.0.0.
	if err := e.AttemptUpdate(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "second check", func(Snapshot) bool { return len(w.omaha.Records()) == 2 })
	if got := eventsString(w.omaha.Events()); got != "3/2 previousversion=0.0.0.0, 3/2" {
		t.Fatalf("events %q", got)
	}
}

func TestServerDown(t *testing.T) {
	w := newWorld(t)
	m := newMachine(t, slotSize)
	cfg := m.config(t, w, &recorder{})
	c := &omaha.Client{Server: "http://127.0.0.1:1/v1/update/"}
	cfg.Checker = &parts.OmahaChecker{Client: c, Params: omaha.Params{Version: "1.0.0"}}
	cfg.Server = c.Server
	e, _, _ := start(t, cfg)
	if err := e.AttemptUpdate(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	s := waitFor(t, e, "idle after failure", func(s Snapshot) bool { return s.Status == update1.Idle && s.LastError != 0 })
	if s.LastError.Base() != omaha.HTTPCode(0) || s.LastError&omaha.FlagTestOmahaURL == 0 {
		t.Fatalf("LastError = %v, want 2000|TestOmahaURL", s.LastError)
	}
}

func TestResumeAfterKill(t *testing.T) {
	w := newWorld(t)
	payload := payloadBytes(3<<20, 5)
	w.publish("p2.bin", "2.0.0", payload, nil)
	w.slowDown = 2 * time.Millisecond
	m := newMachine(t, slotSize)
	rec := &recorder{}
	cfg := m.config(t, w, rec)
	e, cancel, done := start(t, cfg)
	if err := e.AttemptUpdate(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "40% downloaded", func(s Snapshot) bool { return s.Status == update1.Downloading && s.Progress > 0.4 })
	cancel() // the process dies: nothing after this point runs
	<-done
	r, _, err := loadRecord(cfg.Prefs)
	if err != nil || r.Update == nil || r.Update.Phase != PhaseDownloading || r.Update.Checkpoint == nil || r.Update.Checkpoint.Offset == 0 {
		t.Fatalf("no checkpoint recorded: %+v %v", r.Update, err)
	}
	cp := r.Update.Checkpoint
	if n, _ := m.slots.NextBoot(t.Context()); n != "A" {
		t.Fatal("flipped before the download finished")
	}

	w.mu.Lock()
	w.slowDown = 0
	w.ranges = nil
	w.mu.Unlock()
	e2, _, _ := start(t, m.config(t, w, &recorder{}))
	if err := e2.AttemptUpdate(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	s := waitFor(t, e2, "done", func(s Snapshot) bool { return s.Status == update1.UpdatedNeedReboot || idleAfterAttempt(s) })
	if s.Status != update1.UpdatedNeedReboot {
		t.Fatalf("resumed attempt ended %v: %v %s", s.Status, s.LastError, s.LastErrorMessage)
	}
	if s.Resumes != 1 {
		t.Fatalf("Resumes = %d, want 1", s.Resumes)
	}
	w.mu.Lock()
	ranges := w.ranges
	w.mu.Unlock()
	if len(ranges) != 1 || ranges[0] != fmt.Sprintf("bytes=%d-", cp.Offset) {
		t.Fatalf("payload requests after restart: %q, want one Range from %d", ranges, cp.Offset)
	}
	if !fileEquals(t, filepath.Join(m.slots.dir, "B"), payload) || !fileEquals(t, filepath.Join(m.slots.dir, "A"), []byte("old image")) {
		t.Fatal("slots differ after the resumed update")
	}
}

func TestResumeCap(t *testing.T) {
	w := newWorld(t)
	payload := payloadBytes(1<<20, 6)
	w.publish("p2.bin", "2.0.0", payload, nil)
	m := newMachine(t, slotSize)
	cfg := m.config(t, w, &recorder{})
	if err := storeRecord(cfg.Prefs, Record{Update: &Update{Phase: PhaseDownloading, Source: "A", Target: "B", BootID: m.bootID,
		Size: int64(len(payload)), SHA256: sha256Sum(payload), Checkpoint: &Checkpoint{Offset: 1000, State: []byte("junk")}, Resumes: 10}}); err != nil {
		t.Fatal(err)
	}
	e2, _, _ := start(t, cfg)
	if err := e2.AttemptUpdate(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	s := waitFor(t, e2, "done", func(s Snapshot) bool { return s.Status == update1.UpdatedNeedReboot || idleAfterAttempt(s) })
	if s.Status != update1.UpdatedNeedReboot || s.Resumes != 0 {
		t.Fatalf("after 10 resumes the download must start over: %+v", s)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ranges) != 1 || w.ranges[0] != "" {
		t.Fatalf("ranges %q, want one request without Range", w.ranges)
	}
}

func TestRollbackDetected(t *testing.T) {
	w := newWorld(t)
	w.publish("p1.bin", "1.0.0", payloadBytes(100, 7), nil)
	m := newMachine(t, slotSize)
	cfg := m.config(t, w, &recorder{})
	_ = cfg.Prefs.SetString(KeyPreviousVersion, "1.0.0") // we updated from 1.0.0 and are still on it
	e, _, _ := start(t, cfg)
	if s := waitFor(t, e, "loaded", func(s Snapshot) bool { return s.LastError != 0 }); s.LastError != omaha.RollbackError {
		t.Fatalf("LastError = %v, want RollbackError", s.LastError)
	}
	if err := e.AttemptUpdate(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "check", idleAfterAttempt)
	if got := eventsString(w.omaha.Events()); got != "3/0 errorcode=44" {
		t.Fatalf("events %q, want 3/0 errorcode=44", got)
	}
}

func TestRequests(t *testing.T) {
	w := newWorld(t)
	payload := payloadBytes(2<<20, 8)
	w.publish("p2.bin", "2.0.0", payload, nil)
	w.slowDown = 5 * time.Millisecond
	m := newMachine(t, slotSize)
	e, _, _ := start(t, m.config(t, w, &recorder{}))
	ctx := t.Context()

	if err := e.SetChannel(ctx, "beta/../x"); !errors.Is(err, ErrBadChannel) {
		t.Fatalf("SetChannel(bad) = %v", err)
	}
	if err := e.SetChannel(ctx, "beta"); err != nil {
		t.Fatal(err)
	}
	if err := e.AttemptRollback(ctx, false); !errors.Is(err, ErrNoRollback) {
		t.Fatalf("AttemptRollback with an empty B = %v, want ErrNoRollback", err)
	}
	if err := e.AttemptUpdate(ctx, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "downloading", func(s Snapshot) bool { return s.Status == update1.Downloading })
	if err := e.ResetStatus(ctx); !errors.Is(err, ErrBusy) {
		t.Fatalf("ResetStatus while downloading = %v, want ErrBusy", err)
	}
	if err := e.AttemptRollback(ctx, false); !errors.Is(err, ErrNotIdle) {
		t.Fatalf("AttemptRollback while downloading = %v", err)
	}
	if err := e.AttemptUpdate(ctx, ""); err != nil {
		t.Fatalf("AttemptUpdate while busy must be ignored silently: %v", err)
	}
	waitFor(t, e, "done", func(s Snapshot) bool { return s.Status == update1.UpdatedNeedReboot })
	if recs := w.omaha.Records(); recs[0].Track != "beta" {
		t.Fatalf("track %q, want beta", recs[0].Track)
	}
	if n := len(w.omaha.Records()); n != 4 { // check, 13/1, 14/1, 3/1
		t.Fatalf("%d requests; the ignored AttemptUpdate started another check?", n)
	}
}

func TestHealthGate(t *testing.T) {
	tests := []struct {
		name     string
		command  []string
		wantGood bool
	}{
		{"no command", nil, true},
		{"healthy", []string{"true"}, true},
		{"unhealthy", []string{"false"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			m := newMachine(t, slotSize)
			s := m.slots.load()
			s["A"] = slotAttrs{Priority: 2, Tries: 1} // just booted into a fresh slot
			m.slots.save(s)
			cfg := m.config(t, w, &recorder{})
			cfg.Health = HealthGate{Command: tt.command}
			e, _, _ := start(t, cfg)
			snap := waitFor(t, e, "gate", func(s Snapshot) bool { return m.slots.load()["A"].Successful || s.LastError != 0 })
			if got := m.slots.load()["A"].Successful; got != tt.wantGood {
				t.Fatalf("successful = %v, want %v (%+v)", got, tt.wantGood, snap)
			}
		})
	}
}

func TestMapError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want omaha.Code
	}{
		{"nil", nil, omaha.Success},
		{"plain", errors.New("x"), omaha.Error},
		{"explicit code wins", fmt.Errorf("a: %w", status.WithCode(omaha.DownloadWriteError, omaha.ErrXMLParse)), omaha.DownloadWriteError},
		{"empty response", fmt.Errorf("check: %w", omaha.ErrEmptyResponse), omaha.OmahaRequestEmptyResponseError},
		{"xml", omaha.ErrXMLParse, omaha.OmahaRequestXMLParseError},
		{"invalid", omaha.ErrInvalidResponse, omaha.OmahaResponseInvalid},
		{"http 503", &omaha.HTTPError{StatusCode: 503, Err: omaha.ErrHTTPStatus}, omaha.Code(2503)},
		{"network", &omaha.HTTPError{Err: errors.New("refused")}, omaha.Code(2000)},
		{"range", omaha.ErrRangeNotSatisfiable, omaha.DownloadTransferError},
		{"gpt corrupt", gpt.ErrNoValidGPT, omaha.InstallDeviceOpenError},
		{"gpt io", gpt.ErrIO, omaha.DownloadWriteError},
		{"delta source", fmt.Errorf("apply: %w", payload.ErrSourceMismatch), omaha.DownloadStateInitializationError},
		{"delta op source", fmt.Errorf("op 3: %w: %w", payload.ErrSourceMismatch, payload.ErrOperationHashMismatch), omaha.DownloadStateInitializationError},
		{"op data", fmt.Errorf("op 3: %w", payload.ErrOperationHashMismatch), omaha.DownloadOperationHashMismatch},
		{"signature", payload.ErrSignatureMismatch, omaha.DownloadPayloadPubKeyVerificationError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mapError(tt.err); got != tt.want {
				t.Fatalf("mapError = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExecPostinst(t *testing.T) {
	dir := t.TempDir()
	script := func(body string) string {
		p := filepath.Join(dir, fmt.Sprintf("postinst-%d", len(body)))
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		path string
		want omaha.Code
	}{
		{"absent", filepath.Join(dir, "none"), omaha.PostinstallRunnerError},
		{"ok", script("test -n \"$1\""), omaha.Success},
		{"exit 3", script("exit 3"), omaha.PostinstallBootedFromFirmwareB},
		{"fails", script("echo broken >&2; exit 1"), omaha.PostinstallRunnerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := parts.ExecPostinst{Path: tt.path, Timeout: 10 * time.Second}.Run(t.Context(), "/dev/null", nil)
			if got := mapError(err); got != tt.want {
				t.Fatalf("code %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

// flakyOmaha serves w's Omaha through a server that answers the first
// fails update checks with HTTP status; checks counts the checks.
func flakyOmaha(t *testing.T, w *world, fails, status int) (url string, checks func() int) {
	var mu sync.Mutex // guards n and fails
	n := 0
	flaky := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, []byte("<updatecheck")) {
			mu.Lock()
			n++
			f := fails > 0
			fails--
			mu.Unlock()
			if f {
				http.Error(rw, "busy", status)
				return
			}
		}
		w.serve(rw, r)
	}))
	t.Cleanup(flaky.Close)
	return flaky.URL + "/v1/update/", func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// startFlaky starts an engine on a fake clock, without fuzz, whose checks
// go to a server that fails the first fails checks with HTTP status.
func startFlaky(t *testing.T, w *world, fails, status int) (*Engine, *fakeClock, func() int) {
	url, checks := flakyOmaha(t, w, fails, status)
	m := newMachine(t, slotSize)
	cfg := m.config(t, w, &recorder{})
	c := &omaha.Client{Server: url}
	cfg.Checker = &parts.OmahaChecker{Client: c, Params: omaha.Params{Version: m.version}}
	cfg.Downloader = &parts.OmahaDownloader{Client: c}
	cfg.Server = c.Server
	clock := newFakeClock()
	cfg.Clock = clock
	cfg.Schedule = Schedule{Initial: 7 * time.Minute, Interval: 45 * time.Minute, Fuzz: -1}
	e, _, _ := start(t, cfg)
	return e, clock, checks
}

// TestScheduledBackoffThenSuccess: scheduled checks against a server that
// answers 503 twice back off by doubling the last interval (FUE: the
// first, 7 min, doubles to 14 min, under the 45 min floor; then 90 min),
// then the update succeeds; while the reboot is pending, scheduled checks
// are ping-only. Time comes from the injected clock: the test reads each
// armed delay and jumps over it.
func TestScheduledBackoffThenSuccess(t *testing.T) {
	w := newWorld(t)
	w.publish("p2.bin", "2.0.0", payloadBytes(256<<10, 9), nil)
	e, clock, checksSoFar := startFlaky(t, w, 2, http.StatusServiceUnavailable)
	next := func(want time.Duration, what string) { t.Helper(); waitArmed(t, clock, want, what) }
	next(7*time.Minute, "first check")
	waitFor(t, e, "first failure", func(s Snapshot) bool { return checksSoFar() == 1 && s.Status == update1.Idle })
	next(45*time.Minute, "after one failure")
	waitFor(t, e, "second failure", func(s Snapshot) bool { return checksSoFar() == 2 && s.Status == update1.Idle })
	next(90*time.Minute, "after two failures")
	s := waitFor(t, e, "update", func(s Snapshot) bool { return s.Status == update1.UpdatedNeedReboot })
	if s.LastError != omaha.Success {
		t.Fatalf("last error %v", s.LastError)
	}
	n := len(w.omaha.Records())
	next(45*time.Minute, "ping while the reboot is pending")
	waitFor(t, e, "a ping", func(Snapshot) bool {
		recs := w.omaha.Records()
		last := recs[len(recs)-1]
		return len(recs) > n && last.Ping && !last.UpdateCheck && len(last.Events) == 0
	})
	if e.Snapshot().Status != update1.UpdatedNeedReboot {
		t.Fatal("a scheduled ping changed the status")
	}
}

// TestScheduledNoBackoffOn502: only 500 and 503 back off (FUE); checks
// failing with 502 stay at the regular interval.
func TestScheduledNoBackoffOn502(t *testing.T) {
	w := newWorld(t)
	e, clock, checksSoFar := startFlaky(t, w, 3, http.StatusBadGateway)
	waitArmed(t, clock, 7*time.Minute, "first check")
	for i := 1; i <= 2; i++ {
		waitFor(t, e, fmt.Sprintf("failure %d", i), func(s Snapshot) bool { return checksSoFar() == i && s.Status == update1.Idle })
		if got := e.Snapshot().LastError.Base(); got != omaha.HTTPCode(502) {
			t.Fatalf("last error %v, want %v", got, omaha.HTTPCode(502))
		}
		waitArmed(t, clock, 45*time.Minute, fmt.Sprintf("after failure %d", i))
	}
}

// TestSettingsReread: GROUP and SERVER are re-read before every check; a
// SetChannel choice beats GROUP.
func TestSettingsReread(t *testing.T) {
	w := newWorld(t)
	w.publish("p1.bin", "1.0.0", payloadBytes(100, 10), nil)
	m := newMachine(t, slotSize)
	cfg := m.config(t, w, &recorder{})
	var mu sync.Mutex // guards group
	group := "alpha"
	cfg.Settings = func() (Settings, error) {
		mu.Lock()
		defer mu.Unlock()
		return Settings{Track: group, Server: cfg.Server}, nil
	}
	e, _, _ := start(t, cfg)
	check := func() string {
		n := len(w.omaha.Records())
		if err := e.AttemptUpdate(t.Context(), ""); err != nil {
			t.Fatal(err)
		}
		waitFor(t, e, "check", func(s Snapshot) bool { return s.Status == update1.Idle && len(w.omaha.Records()) > n })
		recs := w.omaha.Records()
		return recs[len(recs)-1].Track
	}
	if got := check(); got != "alpha" {
		t.Fatalf("track %q, want alpha", got)
	}
	mu.Lock()
	group = "beta"
	mu.Unlock()
	if got := check(); got != "beta" {
		t.Fatalf("track %q after editing GROUP, want beta", got)
	}
	if err := e.SetChannel(t.Context(), "edge"); err != nil {
		t.Fatal(err)
	}
	if got := check(); got != "edge" {
		t.Fatalf("track %q after SetChannel, want edge", got)
	}
}

// owed reports whether the 3/1 event is still recorded as owed.
func owed(p Prefs) bool {
	r, _, _ := loadRecord(p)
	return r.Update != nil && r.Update.AppliedOwed
}

// setRecord changes the stored record (of a stopped engine).
func setRecord(t *testing.T, p Prefs, f func(*Record)) {
	t.Helper()
	r, _, err := loadRecord(p)
	if err != nil {
		t.Fatal(err)
	}
	f(&r)
	if err := storeRecord(p, r); err != nil {
		t.Fatal(err)
	}
}

// failingPostinst fails with code.
type failingPostinst struct{ code omaha.Code }

func (f failingPostinst) Run(context.Context, string, *Plan) error {
	return status.WithCode(f.code, errors.New("post-install failed"))
}
func (failingPostinst) Cleanup(string) error { return nil }

// TestPostinstFailureFailsUpdate: as in Flatcar, a failed post-install
// (code 5, or 19 for exit 3) fails the update before the flip: the server
// gets 3/0 with the code, the passive slot does not boot next.
func TestPostinstFailureFailsUpdate(t *testing.T) {
	for _, code := range []omaha.Code{omaha.PostinstallRunnerError, omaha.PostinstallBootedFromFirmwareB} {
		t.Run(code.String(), func(t *testing.T) {
			w := newWorld(t)
			w.publish("p2.bin", "2.0.0", payloadBytes(256<<10, 31), nil)
			m := newMachine(t, slotSize)
			cfg := m.config(t, w, &recorder{})
			cfg.Postinst = failingPostinst{code}
			e, _, _ := start(t, cfg)
			if err := e.AttemptUpdate(t.Context(), ""); err != nil {
				t.Fatal(err)
			}
			s := waitFor(t, e, "the attempt", func(s Snapshot) bool {
				return s.Status == update1.UpdatedNeedReboot || idleAfterAttempt(s) && s.LastError != 0
			})
			if s.Status != update1.Idle || s.LastError.Base() != code {
				t.Fatalf("ended %v with %v, want IDLE with %v", s.Status, s.LastError, code)
			}
			if n, _ := m.slots.NextBoot(t.Context()); n != "A" {
				t.Fatalf("next boot %s after a failed post-install", n)
			}
			if ev := eventsString(w.omaha.Events()); !strings.HasSuffix(ev, fmt.Sprintf("3/0 errorcode=%d", code|omaha.FlagTestOmahaURL)) {
				t.Fatalf("events %q", ev)
			}
			if r, _, _ := loadRecord(cfg.Prefs); r.Update != nil {
				t.Fatalf("the failed update is still recorded: %+v", r.Update)
			}
		})
	}
}

// TestScheduledPollInterval: a noupdate answer's PollInterval sets the
// next check (fuzz off here), floored at the regular interval and capped
// at 4 h; without one the regular interval stays.
func TestScheduledPollInterval(t *testing.T) {
	tests := []struct {
		name string
		attr string // updatecheck attribute
		want time.Duration
	}{
		{"2h", ` PollInterval="7200"`, 2 * time.Hour},
		{"under the floor", ` PollInterval="600"`, 45 * time.Minute},
		{"capped", ` PollInterval="86400"`, 4 * time.Hour},
		{"none", "", 45 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `<response protocol="3.0"><app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" status="ok">`+
					`<updatecheck status="noupdate"`+tt.attr+`></updatecheck></app></response>`)
			}))
			defer srv.Close()
			w := newWorld(t)
			m := newMachine(t, slotSize)
			cfg := m.config(t, w, &recorder{})
			c := &omaha.Client{Server: srv.URL + "/v1/update/"}
			cfg.Checker = &parts.OmahaChecker{Client: c, Params: omaha.Params{Version: m.version}}
			cfg.Server = c.Server
			clock := newFakeClock()
			cfg.Clock = clock
			cfg.Schedule = Schedule{Initial: 7 * time.Minute, Interval: 45 * time.Minute, Fuzz: -1}
			e, _, _ := start(t, cfg)
			waitArmed(t, clock, 7*time.Minute, "first check")
			waitFor(t, e, "the check", func(s Snapshot) bool { return s.LastChecked != 0 && s.Status == update1.Idle })
			waitArmed(t, clock, tt.want, "after a noupdate answer")
		})
	}
}
