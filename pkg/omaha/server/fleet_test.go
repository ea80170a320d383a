package server

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/abupdate/update_engine/pkg/omaha"
)

var fixedNow = func() time.Time { return time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC) }

// fleetIDs are n distinct machine ids shaped like /etc/machine-id:
// SHA-256 of a seed and the index, as 32 hex digits (deterministic; the
// seed is logged).
func fleetIDs(t testing.TB, seed string, n int) []string {
	t.Logf("machine ids: seed %q, %d ids", seed, n)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%x", sha256.Sum256(fmt.Appendf(nil, "%s-%d", seed, i)))[:32]
	}
	return ids
}

// offered asks h's decision for every id (an updatecheck from version
// 1.0.0 on track stable), as serveOmaha does, and returns who got the
// update.
func offered(t *testing.T, h *Handler, ids []string) map[string]bool {
	t.Helper()
	metas, err := h.load()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, id := range ids {
		var rec Record
		app := &omaha.App{ID: omaha.DefaultAppID, Version: "1.0.0", Track: "stable", MachineID: id, UpdateCheck: &omaha.UpdateCheck{}}
		uc := h.decide(metas, app, "http://x/packages/", &rec)
		switch rec.Result {
		case ResultUpdate:
			if uc.Status != "ok" {
				t.Fatalf("%s: result update, status %s", id, uc.Status)
			}
			out[id] = true
		case ResultHeldBack:
		default:
			t.Fatalf("%s: result %s", id, rec.Result)
		}
	}
	return out
}

// A rollout of 10% of a group offers the update to 10% ± 0.5% of 10,000
// machines, the same ones on every check and after a restart (settings
// read back from the state file); 20% adds machines and drops none.
func TestRolloutExactness(t *testing.T) {
	dir := t.TempDir()
	writePayloads(t, dir, payload{file: "new.gz", version: "2.0.0"})
	state := filepath.Join(t.TempDir(), "state.db")
	ids := fleetIDs(t, "rollout", 10000)
	h, err := New(Config{Dir: dir, State: state})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.SetGroupRollout("stable", 10); err != nil {
		t.Fatal(err)
	}
	first := offered(t, h, ids)
	share := float64(len(first)) / float64(len(ids)) * 100
	t.Logf("rollout 10%%: %d of %d offered (%.2f%%)", len(first), len(ids), share)
	if share < 9.5 || share > 10.5 {
		t.Errorf("rollout 10%% offered %.2f%% of the machines, want 10%% ± 0.5%%", share)
	}
	if again := offered(t, h, ids); !sameSet(again, first) {
		t.Errorf("a second check offered %d machines, not the same %d", len(again), len(first))
	}
	// Through the HTTP handler, for a sample: the same answers.
	srv := httptest.NewServer(h)
	c := &omaha.Client{Server: srv.URL + "/v1/update/", RequestTimeout: 10 * time.Second}
	for _, id := range ids[:50] {
		p := params("1.0.0")
		p.MachineID = id
		plan, err := c.Check(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		if plan.NoUpdate == first[id] {
			t.Errorf("%s: HTTP check offered=%v, decision %v", id, !plan.NoUpdate, first[id])
		}
	}
	srv.Close()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	h, err = New(Config{Dir: dir, State: state, Rollout: 100}) // the saved settings win
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if s, own := h.settings("stable"); s.Rollout != 10 || !own {
		t.Fatalf("after a restart: %+v own=%v", s, own)
	}
	if after := offered(t, h, ids); !sameSet(after, first) {
		t.Errorf("after a restart %d machines offered, not the same %d", len(after), len(first))
	}
	if err := h.SetGroupRollout("stable", 20); err != nil {
		t.Fatal(err)
	}
	grown := offered(t, h, ids)
	for id := range first {
		if !grown[id] {
			t.Errorf("%s: in the 10%% rollout, not in the 20%% one", id)
		}
	}
	share = float64(len(grown)) / float64(len(ids)) * 100
	t.Logf("rollout 20%%: %d offered (%.2f%%)", len(grown), share)
	if share < 19 || share > 21 {
		t.Errorf("rollout 20%% offered %.2f%%", share)
	}
	// Another group's rollout is its own: "beta" follows the default (100%).
	if s, own := h.settings("beta"); s.Rollout != 100 || own {
		t.Errorf("beta settings %+v own=%v", s, own)
	}
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// checkIn sends an update check (with ping) and then events for id, as a
// Flatcar host does, through the handler.
func checkIn(t testing.TB, c *omaha.Client, id, track, version string, evs ...omaha.Event) *omaha.Plan {
	t.Helper()
	p := params(version)
	p.MachineID, p.Track = id, track
	plan, err := c.Check(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if err := c.SendEvent(t.Context(), p, ev); err != nil {
			t.Fatal(err)
		}
	}
	return plan
}

// The host table, the pause and the rollout survive a restart; a second
// server on the same state file is refused while the first runs; a
// damaged settings value stops New instead of being ignored.
func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	writePayloads(t, dir, payload{file: "new.gz", version: "2.0.0"}, payload{file: "beta.gz", version: "2.1.0", track: "beta"})
	state := filepath.Join(t.TempDir(), "state.db")
	h, s, c := startServer(t, Config{Dir: dir, State: state, Now: fixedNow})
	checkIn(t, c, "aaaa", "stable", "1.0.0", omaha.ErrorEvent(int32(omaha.DownloadTransferError|omaha.FlagTestOmahaURL)))
	checkIn(t, c, "bbbb", "stable", "2.0.0")
	checkIn(t, c, "cccc", "beta", "1.0.0", omaha.EventDownloadStarted)
	if err := h.SetGroupPaused("beta", true); err != nil {
		t.Fatal(err)
	}
	if err := h.SetGroupRollout("stable", 37); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Dir: dir, State: state}); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Errorf("a second server on the same state: %v", err)
	}
	before := h.Fleet()
	s.Close()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	h2, _, c2 := startServer(t, Config{Dir: dir, State: state, Now: fixedNow})
	defer h2.Close()
	after := h2.Fleet()
	b1, _ := json.Marshal(before)
	b2, _ := json.Marshal(after)
	if string(b1) != string(b2) {
		t.Errorf("fleet after the restart differs:\n%s\n%s", b1, b2)
	}
	if after.Hosts != 3 || len(after.Groups) != 2 {
		t.Fatalf("after the restart: %s", b2)
	}
	beta, stable := after.Groups[0], after.Groups[1]
	if !beta.Paused || beta.Latest != "2.1.0" || stable.Rollout != 37 || stable.Paused || len(stable.LastErrors) != 1 ||
		stable.LastErrors[0].Code != int64(omaha.DownloadTransferError|omaha.FlagTestOmahaURL) || stable.LastErrors[0].MachineID != "aaaa" {
		t.Errorf("after the restart: %s", b2)
	}
	// The paused group is still paused for its hosts.
	if plan := checkIn(t, c2, "cccc", "beta", "1.0.0"); !plan.NoUpdate {
		t.Error("paused beta offered an update after a restart")
	}
	h2.Close()

	// A damaged settings value: New fails, naming it.
	db, err := bolt.Open(state, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSettings).Put([]byte("stable"), []byte(`{"rollout":400}`))
	})
	db.Close()
	if _, err := New(Config{Dir: dir, State: state}); err == nil || !strings.Contains(err.Error(), `group "stable"`) {
		t.Errorf("damaged settings: %v", err)
	}
}

// The controls: disabled without a token; with one, a wrong or missing
// token, a bad percent and an unknown group are refused and change
// nothing; the right token (form or Bearer) pauses, resumes and sets the
// rollout; GET / and /api/fleet show the result.
func TestFleetControls(t *testing.T) {
	dir := t.TempDir()
	writePayloads(t, dir, payload{file: "new.gz", version: "2.0.0"})
	post := func(h http.Handler, path string, form url.Values, bearer string) int {
		r := httptest.NewRequest("POST", path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if bearer != "" {
			r.Header.Set("Authorization", "Bearer "+bearer)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	off, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if code := post(off, "/fleet/pause", url.Values{"group": {"*"}, "token": {""}}, ""); code != http.StatusForbidden {
		t.Errorf("no token configured: %d", code)
	}
	if s, _ := off.settings("stable"); s.Paused {
		t.Error("paused without a token")
	}

	const token = "0123456789abcdef-token"
	h, _, c := startServer(t, Config{Dir: dir, AdminToken: token, Now: fixedNow,
		CodeName: func(c int64) string { return omaha.Code(int32(c)).String() }})
	checkIn(t, c, "aaaa", "stable", "1.0.0", omaha.ErrorEvent(int32(omaha.PayloadHashMismatchError)))
	refused := []struct {
		name, path string
		form       url.Values
		bearer     string
		want       int
	}{
		{"no token", "/fleet/pause", url.Values{"group": {"stable"}}, "", http.StatusForbidden},
		{"wrong token", "/fleet/pause", url.Values{"group": {"stable"}, "token": {token + "x"}}, "", http.StatusForbidden},
		{"wrong bearer", "/fleet/pause", url.Values{"group": {"stable"}, "token": {token}}, "nope", http.StatusForbidden},
		{"unknown group", "/fleet/pause", url.Values{"group": {"nosuch"}, "token": {token}}, "", http.StatusBadRequest},
		{"percent too big", "/fleet/rollout", url.Values{"group": {"stable"}, "percent": {"101"}, "token": {token}}, "", http.StatusBadRequest},
		{"percent not a number", "/fleet/rollout", url.Values{"group": {"stable"}, "percent": {"5%"}, "token": {token}}, "", http.StatusBadRequest},
		{"unknown action", "/fleet/delete", url.Values{"group": {"stable"}, "token": {token}}, "", http.StatusNotFound},
	}
	for _, tt := range refused {
		if code := post(h, tt.path, tt.form, tt.bearer); code != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, code, tt.want)
		}
	}
	if s, own := h.settings("stable"); s.Paused || own {
		t.Fatalf("refused requests changed the settings: %+v", s)
	}
	if code := post(h, "/fleet/rollout", url.Values{"group": {"stable"}, "percent": {"25"}, "token": {token}}, ""); code != http.StatusSeeOther {
		t.Errorf("rollout: %d", code)
	}
	if code := post(h, "/fleet/pause", url.Values{"group": {"*"}}, token); code != http.StatusSeeOther {
		t.Errorf("pause all (bearer): %d", code)
	}
	if s, own := h.settings("stable"); !s.Paused || s.Rollout != 25 || !own {
		t.Errorf("stable settings %+v", s)
	}
	if plan := checkIn(t, c, "aaaa", "stable", "1.0.0"); !plan.NoUpdate {
		t.Error("offered while paused")
	}
	if code := post(h, "/fleet/resume", url.Values{"group": {"*"}, "token": {token}}, ""); code != http.StatusSeeOther {
		t.Errorf("resume: %d", code)
	}

	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/api/fleet", nil))
	var f Fleet
	if err := json.Unmarshal(w.Body.Bytes(), &f); err != nil {
		t.Fatalf("api/fleet: %v\n%s", err, w.Body)
	}
	if f.Hosts != 1 || !f.Controls || len(f.Groups) != 1 || f.Groups[0].Rollout != 25 || f.Groups[0].Paused ||
		len(f.Groups[0].LastErrors) != 1 || f.Groups[0].LastErrors[0].Name != "PayloadHashMismatchError(10)" {
		t.Errorf("api/fleet: %s", w.Body)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	page := w.Body.String()
	for _, want := range []string{"Group stable", "Rollout 25%", "PayloadHashMismatchError(10)", `action="/fleet/rollout"`, "<td>1.0.0</td><td class=\"n\">1</td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
	// Without a token the page says the controls are off and has no forms.
	w = httptest.NewRecorder()
	off.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if !strings.Contains(w.Body.String(), "Controls are disabled") || strings.Contains(w.Body.String(), "<form") {
		t.Errorf("page without a token:\n%s", w.Body)
	}
}

// Records keeps the last MaxRecords, oldest first; the host table keeps
// every host.
func TestMaxRecords(t *testing.T) {
	dir := t.TempDir()
	writePayloads(t, dir, payload{file: "new.gz", version: "2.0.0"})
	h, err := New(Config{Dir: dir, MaxRecords: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := h.record([]Record{{MachineID: fmt.Sprint(i), AppID: omaha.DefaultAppID, Track: "stable", Version: "1.0.0"}}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, r := range h.Records() {
		got = append(got, r.MachineID)
	}
	if strings.Join(got, ",") != "7,8,9" || h.Fleet().Hosts != 10 {
		t.Errorf("records %v, hosts %d", got, h.Fleet().Hosts)
	}
}

// When the state file cannot be written, a check-in answers 500 (the
// client retries) and a settings change fails and changes nothing.
func TestStateWriteFails(t *testing.T) {
	dir := t.TempDir()
	writePayloads(t, dir, payload{file: "new.gz", version: "2.0.0"})
	h, _, c := startServer(t, Config{Dir: dir, State: filepath.Join(t.TempDir(), "state.db")})
	checkIn(t, c, "aaaa", "stable", "1.0.0")
	h.st.close() // every later write fails
	p := params("1.0.0")
	if _, err := c.Check(t.Context(), p); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("check with a broken state file: %v", err)
	}
	if err := h.SetGroupRollout("stable", 5); err == nil {
		t.Error("rollout set without saving it")
	}
	if s, own := h.settings("stable"); s.Rollout != 100 || own {
		t.Errorf("settings changed: %+v", s)
	}
	if h.LogError() == nil {
		t.Error("LogError does not report the failed write")
	}
}
