package server

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/pkg/omaha"
)

var update = flag.Bool("update", false, "rewrite golden files")

type payload struct {
	file, version, source, appid, track string
	delta                               bool
	size                                int
}

// writePayloads creates each payload file (deterministic bytes) and its
// metadata, as payload_generator does.
func writePayloads(t testing.TB, dir string, ps ...payload) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for i, p := range ps {
		n := p.size
		if n == 0 {
			n = 4096 + i
		}
		data := bytes.Repeat([]byte(p.file+p.version), n/len(p.file+p.version)+1)[:n]
		if err := os.WriteFile(filepath.Join(dir, p.file), data, 0o644); err != nil {
			t.Fatal(err)
		}
		s2, s1 := sha256.Sum256(data), sha1.Sum(data)
		m := Metadata{File: p.file, Version: p.version, SourceVersion: p.source, Delta: p.delta, Size: int64(n),
			SHA256: base64.StdEncoding.EncodeToString(s2[:]), SHA1: base64.StdEncoding.EncodeToString(s1[:]),
			AppID: p.appid, Track: p.track}
		b, _ := json.Marshal(m)
		if err := os.WriteFile(filepath.Join(dir, p.file+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		out[p.file] = data
	}
	return out
}

func params(version string) omaha.Params {
	return omaha.Params{
		Version: version, Track: "stable", BootID: "4f1c2a4e-8e0b-4b0d-9a57-2b1bd1c0a7d3",
		MachineID: "0123456789abcdef0123456789abcdef", Board: "amd64-usr", Arch: "x86_64",
		AlephVersion: "3510.2.0", PreviousVersion: "3760.2.0",
	}
}

func startServer(t *testing.T, cfg Config) (*Handler, *httptest.Server, *omaha.Client) {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	hc, err := omaha.NewHTTPClient(omaha.TransportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	return h, s, &omaha.Client{Server: s.URL + "/v1/update/", HTTP: hc, RequestTimeout: 10 * time.Second}
}

// The whole exchange: check, update offered, payload downloaded (and
// resumed with Range), events recorded, then noupdate once current.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	data := writePayloads(t, dir,
		payload{file: "old.gz", version: "3760.2.0"},
		payload{file: "new.gz", version: "3850.0.0"},
		payload{file: "beta.gz", version: "3900.0.0", track: "beta"},
	)
	var log bytes.Buffer
	h, s, c := startServer(t, Config{Dir: dir, Log: &log})
	ctx := t.Context()
	p := params("3815.2.0")

	plan, err := c.Check(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if plan.NoUpdate || plan.Version != "3850.0.0" || plan.PackageName != "new.gz" || plan.Size != int64(len(data["new.gz"])) {
		t.Fatalf("plan %+v", plan)
	}
	if plan.URLs[0] != s.URL+"/packages/new.gz" || !plan.DisablePayloadBackoff || plan.IsDeltaPayload {
		t.Errorf("plan %+v", plan)
	}
	want := sha256.Sum256(data["new.gz"])
	if sum, err := plan.SHA256Bytes(); err != nil || !bytes.Equal(sum, want[:]) {
		t.Errorf("sha256 %x, %v", sum, err)
	}
	if !bytes.Equal(plan.Packages[0].SHA256, want[:]) || len(plan.Packages[0].SHA1) != 20 {
		t.Errorf("package hashes %+v", plan.Packages[0])
	}
	if !strings.Contains(string(plan.Raw), `hash_sha256="`+fmt.Sprintf("%x", want)+`"`) {
		t.Errorf("hash_sha256 is not hex:\n%s", plan.Raw)
	}

	if err := c.SendEvent(ctx, p, omaha.EventDownloadStarted); err != nil {
		t.Fatal(err)
	}
	// Download in two pieces: the second with Range.
	pl, err := c.OpenPayload(ctx, plan.URLs[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 1000)
	if _, err := io.ReadFull(pl.Body, first); err != nil {
		t.Fatal(err)
	}
	pl.Body.Close()
	pl, err = c.OpenPayload(ctx, plan.URLs[0], 1000)
	if err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(pl.Body)
	pl.Body.Close()
	if err != nil || pl.RangeIgnored || !bytes.Equal(append(first, rest...), data["new.gz"]) {
		t.Fatalf("download: %v ignored=%v", err, pl.RangeIgnored)
	}
	for _, ev := range []omaha.Event{omaha.EventDownloadFinished, omaha.EventUpdateApplied} {
		if err := c.SendEvent(ctx, p, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Ping(ctx, p); err != nil {
		t.Fatal(err)
	}

	// After the reboot: current, so noupdate; the 3/2 event is recorded.
	after := params("3850.0.0")
	after.PreviousVersion = "3815.2.0"
	plan, err = c.Check(ctx, after)
	if err != nil || !plan.NoUpdate {
		t.Fatalf("after update: %+v, %v", plan, err)
	}

	type ev struct {
		T omaha.EventType
		R omaha.EventResult
		P string
	}
	var got []ev
	for _, e := range h.Events() {
		got = append(got, ev{e.Type, e.Result, e.PreviousVersion})
	}
	wantEv := []ev{{3, 2, "3760.2.0"}, {13, 1, ""}, {14, 1, ""}, {3, 1, ""}, {3, 2, "3815.2.0"}}
	if fmt.Sprint(got) != fmt.Sprint(wantEv) {
		t.Errorf("events %v, want %v", got, wantEv)
	}
	recs := h.Records()
	if len(recs) != 6 {
		t.Fatalf("%d records", len(recs))
	}
	if r := recs[0]; r.Result != ResultUpdate || r.Offered != "new.gz" || !r.UpdateCheck || !r.Ping || r.MachineID != p.MachineID || r.Track != "stable" {
		t.Errorf("first record %+v", r)
	}
	if r := recs[4]; r.Result != "" || !r.Ping || r.UpdateCheck {
		t.Errorf("ping record %+v", r)
	}
	if r := recs[5]; r.Result != ResultNoUpdate || r.Version != "3850.0.0" {
		t.Errorf("last record %+v", r)
	}
	// The JSON lines say the same.
	sc := bufio.NewScanner(&log)
	lines := 0
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		lines++
	}
	if lines != 6 {
		t.Errorf("%d log lines", lines)
	}
}

func TestSelection(t *testing.T) {
	const other = "{11111111-2222-3333-4444-555555555555}"
	dir := t.TempDir()
	writePayloads(t, dir,
		payload{file: "full-2.gz", version: "2.0.0"},
		payload{file: "full-10.gz", version: "10.0.0"},
		payload{file: "delta-9-10.gz", version: "10.0.0", source: "9.0.0", delta: true},
		payload{file: "alpha-11.gz", version: "11.0.0", track: "alpha"},
		payload{file: "other.gz", version: "5.0.0", appid: strings.ToUpper(other)},
	)
	tests := []struct {
		name        string
		cfg         Config
		mutate      func(*omaha.Params)
		wantFile    string // "" = noupdate
		wantErr     error
		wantResult  string
		wantIsDelta bool
	}{
		{"older client gets the newest full", Config{}, func(p *omaha.Params) { p.Version = "9.0.0" }, "full-10.gz", nil, ResultUpdate, false},
		{"numeric compare, not string", Config{}, func(p *omaha.Params) { p.Version = "2.0.0" }, "full-10.gz", nil, ResultUpdate, false},
		{"current gets noupdate", Config{}, func(p *omaha.Params) { p.Version = "10.0.0" }, "", nil, ResultNoUpdate, false},
		{"newer gets noupdate", Config{}, func(p *omaha.Params) { p.Version = "10.0.1" }, "", nil, ResultNoUpdate, false},
		{"delta when the client takes deltas", Config{}, func(p *omaha.Params) { p.Version = "9.0.0"; p.DeltaOK = true }, "delta-9-10.gz", nil, ResultUpdate, true},
		{"delta when the server prefers them", Config{PreferDelta: true}, func(p *omaha.Params) { p.Version = "9.0.0" }, "delta-9-10.gz", nil, ResultUpdate, true},
		{"no delta from another version", Config{PreferDelta: true}, func(p *omaha.Params) { p.Version = "8.0.0" }, "full-10.gz", nil, ResultUpdate, false},
		{"track alpha sees its payload", Config{}, func(p *omaha.Params) { p.Version = "9.0.0"; p.Track = "alpha" }, "alpha-11.gz", nil, ResultUpdate, false},
		{"other app, braces and case ignored", Config{}, func(p *omaha.Params) { p.Version = "1.0.0"; p.AppID = strings.Trim(other, "{}") }, "other.gz", nil, ResultUpdate, false},
		{"unknown app", Config{}, func(p *omaha.Params) { p.AppID = "{deadbeef-0000-0000-0000-000000000000}" }, "", omaha.ErrInvalidResponse, ResultUnknownApp, false},
		{"paused", Config{Paused: true}, func(p *omaha.Params) { p.Version = "9.0.0" }, "", nil, ResultPaused, false},
		{"rollout excludes the machine", Config{Rollout: RolloutBucket("0123456789abcdef0123456789abcdef", "stable", "10.0.0")}, func(p *omaha.Params) { p.Version = "9.0.0" }, "", nil, ResultHeldBack, false},
		{"rollout includes the machine", Config{Rollout: RolloutBucket("0123456789abcdef0123456789abcdef", "stable", "10.0.0") + 1}, func(p *omaha.Params) { p.Version = "9.0.0" }, "full-10.gz", nil, ResultUpdate, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Dir = dir
			h, _, c := startServer(t, cfg)
			p := params("1.0.0")
			tt.mutate(&p)
			plan, err := c.Check(t.Context(), p)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if tt.wantFile == "" {
				if !plan.NoUpdate {
					t.Errorf("offered %s", plan.PackageName)
				}
			} else if plan.NoUpdate || plan.PackageName != tt.wantFile || plan.IsDeltaPayload != tt.wantIsDelta {
				t.Errorf("plan %+v, want %s", plan, tt.wantFile)
			}
			if r := h.Records(); len(r) != 1 || r[0].Result != tt.wantResult {
				t.Errorf("records %+v, want result %s", r, tt.wantResult)
			}
		})
	}
}

func TestPauseAndRolloutSwitches(t *testing.T) {
	dir := t.TempDir()
	writePayloads(t, dir, payload{file: "new.gz", version: "2.0.0"})
	h, _, c := startServer(t, Config{Dir: dir})
	check := func() bool {
		plan, err := c.Check(t.Context(), params("1.0.0"))
		if err != nil {
			t.Fatal(err)
		}
		return !plan.NoUpdate
	}
	steps := []struct {
		name string
		set  func()
		want bool
	}{
		{"default", func() {}, true},
		{"paused", func() { h.SetPaused(true) }, false},
		{"resumed", func() { h.SetPaused(false) }, true},
		{"rollout 0", func() { h.SetRollout(0) }, false},
		{"rollout 100", func() { h.SetRollout(100) }, true},
	}
	for _, s := range steps {
		s.set()
		if got := check(); got != s.want {
			t.Errorf("%s: update offered %v, want %v", s.name, got, s.want)
		}
	}
}

func TestRolloutSpread(t *testing.T) {
	n := 0
	for i := range 1000 {
		if inRollout(RolloutBucket(fmt.Sprintf("%032x", i), "stable", "2.0.0"), 30) {
			n++
		}
	}
	if n < 250 || n > 350 {
		t.Errorf("30%% rollout took %d of 1000 machines", n)
	}
}

func TestGoldenResponse(t *testing.T) {
	dir := t.TempDir()
	writePayloads(t, dir, payload{file: "flatcar_production_update.gz", version: "3850.0.0", size: 1000})
	h, err := New(Config{Dir: dir, BaseURL: "http://updates.example.com/packages/",
		Now: func() time.Time { return time.Date(2026, 1, 2, 13, 36, 48, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	w := postFile(t, h, "request_check.xml")
	const name = "../../../testdata/omaha/server_response_update.xml"
	if *update {
		os.WriteFile(name, w.Body.Bytes(), 0o644)
	}
	want, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if w.Body.String() != string(want) {
		t.Errorf("response differs from %s:\n%s", name, w.Body)
	}
	if _, err := omaha.ParseResponse(w.Body.Bytes()); err != nil {
		t.Errorf("our client rejects it: %v", err)
	}
}

func TestBadRequests(t *testing.T) {
	dir := t.TempDir()
	writePayloads(t, dir, payload{file: "new.gz", version: "2.0.0"})
	os.WriteFile(filepath.Join(dir, "secret"), []byte("x"), 0o600)
	h, err := New(Config{Dir: dir, MaxRequestBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"GET on the Omaha URL", "GET", "/v1/update/", "", http.StatusMethodNotAllowed},
		{"bad XML", "POST", "/v1/update/", "<request", http.StatusBadRequest},
		{"too large", "POST", "/v1/update/", strings.Repeat("x", 5000), http.StatusRequestEntityTooLarge},
		{"no trailing slash", "POST", "/v1/update", `<request protocol="3.0"></request>`, http.StatusOK},
		{"unknown path", "GET", "/nope", "", http.StatusNotFound},
		{"only listed packages", "GET", "/packages/secret", "", http.StatusNotFound},
		{"no traversal", "GET", "/packages/../new.gz.json", "", http.StatusNotFound},
		{"POST on a package", "POST", "/packages/new.gz", "", http.StatusMethodNotAllowed},
		{"package", "GET", "/packages/new.gz", "", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(tt.method, "/", strings.NewReader(tt.body))
			r.URL.Path = tt.path
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Errorf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
		})
	}
}

func TestLoadDirErrors(t *testing.T) {
	tests := []struct {
		name, json string
	}{
		{"bad JSON", "{"},
		{"path in file", `{"file":"../x","version":"1","size":1,"sha256":"TLcHrRa+zwl7tFr0TVm1/m6FtAhYoVBil+81buhyvxg="}`},
		{"no size", `{"file":"x","version":"1","sha256":"TLcHrRa+zwl7tFr0TVm1/m6FtAhYoVBil+81buhyvxg="}`},
		{"bad sha256", `{"file":"x","version":"1","size":1,"sha256":"abc"}`},
		{"delta without source", `{"file":"x","version":"1","size":1,"delta":true,"sha256":"TLcHrRa+zwl7tFr0TVm1/m6FtAhYoVBil+81buhyvxg="}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "m.json"), []byte(tt.json), 0o644)
			if _, err := LoadDir(dir); !errors.Is(err, ErrBadMetadata) {
				t.Errorf("err = %v", err)
			}
			if _, err := New(Config{Dir: dir}); err == nil {
				t.Error("New accepted it")
			}
		})
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "other.json"), []byte(`{"name":"not a payload"}`), 0o644)
	if m, err := LoadDir(dir); err != nil || len(m) != 0 {
		t.Errorf("unrelated JSON: %v %v", m, err)
	}
}

// A broken metadata file dropped in while serving (a half-copied upload)
// is logged once and left out; the other payloads are still offered and
// served, and the fixed file is picked up on the next check.
func TestBrokenFileWhileServing(t *testing.T) {
	dir := t.TempDir()
	data := writePayloads(t, dir, payload{file: "new.gz", version: "3850.0.0"})
	var logs bytes.Buffer
	_, s, c := startServer(t, Config{Dir: dir, ErrorLog: log.New(&logs, "", 0)})
	if err := os.WriteFile(filepath.Join(dir, "newer.gz.json"), []byte(`{"file":"newer.gz","vers`), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		plan, err := c.Check(t.Context(), params("3815.2.0"))
		if err != nil {
			t.Fatal(err)
		}
		if plan.NoUpdate || plan.Version != "3850.0.0" {
			t.Fatalf("check %d: plan %+v, want 3850.0.0", i, plan)
		}
	}
	resp, err := http.Get(s.URL + "/packages/new.gz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data["new.gz"]) {
		t.Fatalf("package: %d, %d bytes", resp.StatusCode, len(body))
	}
	if n := strings.Count(logs.String(), "newer.gz.json"); n != 1 {
		t.Errorf("the broken file is named %d times in the log, want once:\n%s", n, logs.String())
	}

	writePayloads(t, dir, payload{file: "new.gz", version: "3850.0.0"}, payload{file: "newer.gz", version: "3900.0.0"})
	plan, err := c.Check(t.Context(), params("3815.2.0"))
	if err != nil || plan.Version != "3900.0.0" {
		t.Fatalf("after the fix: %+v, %v", plan, err)
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"3815.2.0", "3850.0.0", -1},
		{"10.0.0", "9.0.0", 1},
		{"1.2", "1.2.0", 0},
		{"1.2.0+build5", "1.2.0", 0},
		{"1.0.0-rc1", "1.0.0", -1},
		{"1.0.0-rc2", "1.0.0-rc1", 1},
		{"0.0.0.0", "1", -1},
	}
	for _, tt := range tests {
		t.Run(tt.a+" vs "+tt.b, func(t *testing.T) {
			if got := CompareVersions(tt.a, tt.b); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
			if got := CompareVersions(tt.b, tt.a); got != -tt.want {
				t.Errorf("reverse got %d", got)
			}
		})
	}
}

func TestNewMissingDir(t *testing.T) {
	if _, err := New(Config{Dir: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("New accepted a missing directory")
	}
}

// A ChromeOS/go-omaha style request (upper-case app id, ping a/r,
// targetversionprefix, two apps, Nebraska's custom 800 event) is answered
// per app and recorded.
// postFile posts testdata/omaha/name to h as an update check and wants 200.
func postFile(t *testing.T, h *Handler, name string) *httptest.ResponseRecorder {
	t.Helper()
	req, err := os.ReadFile("../../../testdata/omaha/" + name)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/update/", bytes.NewReader(req)))
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	return w
}

func TestChromeOSStyleRequest(t *testing.T) {
	dir := t.TempDir()
	writePayloads(t, dir, payload{file: "new.gz", version: "2.0.0"})
	h, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	w := postFile(t, h, "request_chromeos_style.xml")
	var resp omaha.Response
	if err := xml.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Apps) != 2 {
		t.Fatalf("%d apps in %s", len(resp.Apps), w.Body)
	}
	a := resp.Apps[0]
	if a.Status != "ok" || a.Ping == nil || a.UpdateCheck == nil || a.UpdateCheck.Status != "ok" || len(a.Events) != 1 {
		t.Errorf("first app %s", w.Body)
	}
	if a.UpdateCheck.Manifest == nil || a.UpdateCheck.Manifest.Version != "2.0.0" {
		t.Errorf("manifest %+v", a.UpdateCheck.Manifest)
	}
	if b := resp.Apps[1]; b.UpdateCheck != nil || len(b.Events) != 1 || b.Events[0].Status != "ok" {
		t.Errorf("second app %+v", b)
	}
	ev := h.Events()
	if len(ev) != 2 || ev[1].Type != omaha.EventTypeNebraskaInstalled || ev[1].Result != omaha.EventResultSuccess {
		t.Errorf("events %+v", ev)
	}
	if r := h.Records(); len(r) != 2 || !r[0].DeltaOK || r[0].InstallSource != "ondemandupdate" || r[0].Result != ResultUpdate {
		t.Errorf("records %+v", r)
	}
}

// FuzzServeOmaha: any request body gets an answer, never a panic, and a
// 200 answer is a response our client parses.
func FuzzServeOmaha(f *testing.F) {
	for _, n := range []string{"request_check.xml", "request_rollback.xml", "request_ping.xml", "request_chromeos_style.xml"} {
		b, err := os.ReadFile("../../../testdata/omaha/" + n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	dir := f.TempDir()
	writePayloads(f, dir, payload{file: "new.gz", version: "2.0.0"})
	h, err := New(Config{Dir: dir})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/update/", bytes.NewReader(body)))
		if w.Code != 200 {
			return
		}
		var resp omaha.Response
		if err := xml.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatalf("unparsable answer %q: %v", w.Body, err)
		}
	})
}
