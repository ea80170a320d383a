package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/omaha/server"
)

// payloadDir is a new directory holding one full payload, p.gz, of
// version, and its metadata.
func payloadDir(t testing.TB, version string) string {
	t.Helper()
	dir := t.TempDir()
	data := bytes.Repeat([]byte("payload"), 1000)
	s2, s1 := sha256.Sum256(data), sha1.Sum(data)
	meta, _ := json.Marshal(server.Metadata{File: "p.gz", Version: version, Size: int64(len(data)),
		SHA256: base64.StdEncoding.EncodeToString(s2[:]), SHA1: base64.StdEncoding.EncodeToString(s1[:])})
	if err := os.WriteFile(filepath.Join(dir, "p.gz"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "p.gz.json"), meta, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The binary's run loop end to end: flags, a payload directory, a check,
// the admin pause, the JSON log, and a clean shutdown.
func TestRun(t *testing.T) {
	dir := payloadDir(t, "2.0.0")
	logFile := filepath.Join(t.TempDir(), "log.jsonl")

	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"--dir", dir, "--listen", "127.0.0.1:0", "--log", logFile, "--admin"}, &stderr, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	c := &omaha.Client{Server: "http://" + addr + "/v1/update/"}
	p := omaha.Params{Version: "1.0.0", Track: "stable", MachineID: "abc"}
	plan, err := c.Check(ctx, p)
	if err != nil || plan.NoUpdate || plan.Version != "2.0.0" {
		t.Fatalf("check: %+v %v", plan, err)
	}
	resp, err := http.Post("http://"+addr+"/admin/pause", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("pause: %v %v", resp, err)
	}
	resp.Body.Close()
	if plan, err = c.Check(ctx, p); err != nil || !plan.NoUpdate {
		t.Fatalf("paused check: %+v %v", plan, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var results []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r server.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		results = append(results, r.Result)
	}
	if strings.Join(results, ",") != "update,paused" {
		t.Errorf("logged results %v", results)
	}
}

func TestRunBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--rollout", "101"},
		{"--dir", filepath.Join(t.TempDir(), "missing")},
		{"--nope"},
	} {
		var stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := run(ctx, append(args, "--listen", "127.0.0.1:0"), &stderr, nil); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// startRun runs the server with args until the returned stop is called.
func startRun(t *testing.T, args ...string) (addr string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, append(args, "--listen", "127.0.0.1:0"), io.Discard, ready) }()
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("run: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("not ready")
	}
	return addr, func() error { cancel(); return <-done }
}

// With --state the settings changed on the fleet page's controls and the
// host table survive a restart; an explicit --rollout overwrites the
// saved default; error codes are named with update_engine's names; a
// short token is refused.
func TestRunStateAndControls(t *testing.T) {
	dir := payloadDir(t, "2.0.0")
	state := filepath.Join(t.TempDir(), "state.db")
	tokenFile := filepath.Join(t.TempDir(), "token")
	const token = "a-token-of-more-than-16-characters"
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	args := []string{"--dir", dir, "--state", state, "--token-file", tokenFile}
	p := omaha.Params{Version: "1.0.0", Track: "stable", MachineID: "abc"}

	addr, stop := startRun(t, args...)
	c := &omaha.Client{Server: "http://" + addr + "/v1/update/"}
	if plan, err := c.Check(t.Context(), p); err != nil || plan.NoUpdate {
		t.Fatalf("check: %+v %v", plan, err)
	}
	if err := c.SendEvent(t.Context(), p, omaha.ErrorEvent(int32(omaha.DownloadTransferError))); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+addr+"/fleet/rollout", strings.NewReader("group=stable&percent=0"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("rollout: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	addr, stop = startRun(t, args...)
	c = &omaha.Client{Server: "http://" + addr + "/v1/update/"}
	if plan, err := c.Check(t.Context(), p); err != nil || !plan.NoUpdate {
		t.Errorf("after a restart, rollout 0 of stable: %+v %v", plan, err)
	}
	resp, err = http.Get("http://" + addr + "/api/fleet")
	if err != nil {
		t.Fatal(err)
	}
	var f server.Fleet
	json.NewDecoder(resp.Body).Decode(&f)
	resp.Body.Close()
	if f.Hosts != 1 || len(f.Groups) != 1 || f.Groups[0].Rollout != 0 || !f.Controls || len(f.Groups[0].LastErrors) != 1 ||
		f.Groups[0].LastErrors[0].Name != "DownloadTransferError(9)" {
		t.Errorf("fleet after a restart: %+v", f)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// --rollout given: the saved default changes (the group keeps its own).
	addr, stop = startRun(t, append(args, "--rollout", "40")...)
	resp, err = http.Get("http://" + addr + "/api/fleet")
	if err != nil {
		t.Fatal(err)
	}
	f = server.Fleet{}
	json.NewDecoder(resp.Body).Decode(&f)
	resp.Body.Close()
	if f.Default.Rollout != 40 || f.Groups[0].Rollout != 0 {
		t.Errorf("with --rollout 40: %+v", f)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	os.WriteFile(tokenFile, []byte("short\n"), 0o600)
	if err := run(t.Context(), append(args, "--listen", "127.0.0.1:0"), io.Discard, nil); err == nil || !strings.Contains(err.Error(), "16 characters") {
		t.Errorf("short token: %v", err)
	}
}

// TestAdminLoopbackOnly: the token-less /admin controls refuse a peer
// that is not this machine and answer one that is.
func TestAdminLoopbackOnly(t *testing.T) {
	var hit bool
	h := loopbackOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit = true }))
	for _, c := range []struct {
		remote string
		want   int
	}{{"127.0.0.1:5000", http.StatusOK}, {"[::1]:5000", http.StatusOK}, {"10.0.0.7:5000", http.StatusForbidden}, {"garbage", http.StatusForbidden}} {
		hit = false
		r := httptest.NewRequest("POST", "/admin/pause", nil)
		r.RemoteAddr = c.remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.want || hit != (c.want == http.StatusOK) {
			t.Errorf("peer %s: code %d (handler ran: %v), want %d", c.remote, w.Code, hit, c.want)
		}
	}
}
