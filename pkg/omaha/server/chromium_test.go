package server

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/pkg/omaha"
)

// chromium finds Debian's chromium; as root (where make deps installs it)
// a missing one fails the test, otherwise it skips, loudly.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Geteuid() == 0 {
		t.Fatal("chromium not installed: make deps (scripts/deps.sh) installs it")
	}
	t.Skip("SKIP: chromium not installed (make deps installs it as root)")
	return ""
}

// seedFleet puts n hosts in h's host table through the same path check-ins
// take (record): 70% on track stable (5 in 7 of them still on 3815.2.0),
// 30% on beta; every 500th host reported an error.
func seedFleet(t *testing.T, h *Handler, n int) {
	t.Helper()
	ids := fleetIDs(t, "fleet-page", n)
	var recs []Record
	for i, id := range ids {
		rec := Record{Time: fixedNow(), AppID: omaha.DefaultAppID, MachineID: id, UpdateCheck: true, Ping: true}
		switch {
		case i%10 < 5:
			rec.Track, rec.Version = "stable", "3815.2.0"
		case i%10 < 7:
			rec.Track, rec.Version = "stable", "3850.0.0"
		default:
			rec.Track, rec.Version = "beta", "3850.0.0"
		}
		if i%500 == 0 {
			code := int64(omaha.DownloadTransferError | omaha.FlagTestOmahaURL)
			rec.Events = []RecordedEvent{{MachineID: id, Type: omaha.EventTypeUpdateComplete, Result: omaha.EventResultError, ErrorCode: &code}}
		}
		recs = append(recs, rec)
		if len(recs) == 100 || i == len(ids)-1 {
			if err := h.record(recs); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
		}
	}
}

// The fleet page of a 10,000-host fleet as headless Chromium renders it:
// the text of the DOM (groups, host counts, versions, rollout, an error
// name) and a screenshot that decodes as a PNG of the window's size with
// more than one colour.
func TestFleetPageChromium(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()
	writePayloads(t, dir, payload{file: "stable.gz", version: "3850.0.0", track: "stable"},
		payload{file: "beta.gz", version: "3900.0.0", track: "beta"})
	h, err := New(Config{Dir: dir, Now: fixedNow, AdminToken: "0123456789abcdef-token",
		CodeName: func(c int64) string { return omaha.Code(int32(c)).String() }})
	if err != nil {
		t.Fatal(err)
	}
	seedFleet(t, h, 10000)
	if err := h.SetGroupRollout("stable", 10); err != nil {
		t.Fatal(err)
	}
	if err := h.SetGroupPaused("beta", true); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	profile := t.TempDir()
	// A bound against a hung browser, not a timing assertion.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	run := func(args ...string) []byte {
		args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + profile,
			"--window-size=1280,1600"}, args...)
		cmd := exec.CommandContext(ctx, bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.Env = append(os.Environ(), "HOME="+profile)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, stderr.Bytes())
		}
		return out
	}
	dom := string(run("--dump-dom", srv.URL+"/"))
	text := strings.Join(strings.Fields(stripTags(dom)), " ")
	for _, want := range []string{
		"10000 hosts in 2 groups",
		"Group beta", "3000 hosts", "Newest version 3900.0.0: 0 hosts on it", "Rollout 100%, paused",
		"Group stable", "7000 hosts", "Newest version 3850.0.0: 2000 hosts on it", "Rollout 10%, running",
		"3815.2.0 5000", "3850.0.0 2000", "3850.0.0 3000",
		fmt.Sprint(int64(omaha.DownloadTransferError | omaha.FlagTestOmahaURL)), "DownloadTransferError(9)|TestOmahaURL",
		"Set rollout",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered page lacks %q:\n%s", want, text)
		}
	}
	// The in-rollout count of stable is the hash's, as /api/fleet says.
	f := h.Fleet()
	if want := fmt.Sprintf("%d more in the rollout", f.Groups[1].InRollout); !strings.Contains(text, want) {
		t.Errorf("rendered page lacks %q", want)
	}

	shot := filepath.Join(t.TempDir(), "fleet.png")
	run("--screenshot="+shot, "--hide-scrollbars", srv.URL+"/")
	raw, err := os.ReadFile(shot)
	if err != nil || len(raw) == 0 {
		t.Fatalf("screenshot: %d bytes, %v", len(raw), err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("screenshot does not decode: %v", err)
	}
	b := img.Bounds()
	if b.Dx() != 1280 || b.Dy() != 1600 {
		t.Errorf("screenshot %v, want 1280x1600", b)
	}
	first := img.At(b.Min.X, b.Min.Y)
	distinct := false
	for y := b.Min.Y; y < b.Max.Y && !distinct; y += 4 {
		for x := b.Min.X; x < b.Max.X && !distinct; x += 4 {
			distinct = img.At(x, y) != first
		}
	}
	if !distinct {
		t.Error("screenshot is one colour")
	}
	t.Logf("screenshot %s: %d bytes, %v", shot, len(raw), b)
	if keep := os.Getenv("UE_FLEET_SCREENSHOT"); keep != "" {
		os.WriteFile(keep, raw, 0o644)
	}
}

// stripTags turns the dumped DOM into its text (tags become spaces; the
// style element's content is dropped).
func stripTags(s string) string {
	if i, j := strings.Index(s, "<style>"), strings.Index(s, "</style>"); i >= 0 && j > i {
		s = s[:i] + s[j:]
	}
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
			b.WriteByte(' ')
		case r == '>':
			in = false
		case !in:
			b.WriteRune(r)
		}
	}
	return strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&#34;", `"`, "&#39;", "'").Replace(b.String())
}
