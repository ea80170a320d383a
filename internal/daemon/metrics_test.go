package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/metrics"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/rebootmgr"
)

// scrapeUnix GETs /metrics over the Unix socket at path.
func scrapeUnix(t *testing.T, path string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	resp, err := c.Get("http://metrics/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s %v", path, resp.Status, err)
	}
	return string(b)
}

// promtoolCheck runs `promtool check metrics` (Debian package prometheus)
// on a scrape and fails on any complaint.
func promtoolCheck(t *testing.T, what, scrape string) {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(scrape)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics on the %s's scrape: %v\n%s", what, err, out)
	}
}

// families returns the metric families a scrape declares (# TYPE lines).
func families(scrape string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllStringSubmatch(scrape, -1) {
		out = append(out, m[1])
	}
	return out
}

// readmeMetrics returns the metric names the README's Metrics section
// lists (its table's first column).
func readmeMetrics(t *testing.T) []string {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## Metrics\n")
	if i < 0 {
		t.Fatal("README has no '## Metrics' section")
	}
	s = s[i+1:]
	if j := strings.Index(s[3:], "\n## "); j >= 0 {
		s = s[:j+3]
	}
	var out []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)`").FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestMetricsScrape: the daemon and the reboot manager, each serving its
// metrics on a Unix socket, go through a failed update (a corrupt
// payload), a good one and the reboot it asks for; their real scrapes pass
// `promtool check metrics`, carry the samples those events make (errors
// by code and name, operation durations, the reboot), and declare exactly
// the update_engine metrics the README's Metrics section lists.
func TestMetricsScrape(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("SKIP: promtool not installed (Debian package prometheus; scripts/deps.sh)")
	}
	w := newOmaha(t)
	img := image(2<<20, 8)
	w.publish("v2.bin", "2.0.0", img, true) // Omaha's SHA-256 is wrong: error 10
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	writeSlotA(t, disk, oldImage)
	h := newHost(t, disk)
	o := h.options(w.url())
	sock := filepath.Join(t.TempDir(), "ue", "metrics.promsock")
	o.Overrides["UPDATE_ENGINE_METRICS_SOCKET"] = sock
	stopDaemon := runDaemon(t, o)
	c := client(t, h.bus)
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(w.events(), "3/0") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	waitOp(t, c, 30*time.Second, "UPDATE_STATUS_IDLE")

	logind := &fakeLogind{reboots: make(chan bool, 4)}
	logind.export(t, h.bus)
	dir := t.TempDir()
	rmSock := filepath.Join(dir, "rm", "metrics.promsock")
	ctx, cancel := context.WithCancel(t.Context())
	var out bytes.Buffer
	mgrDone := make(chan int, 1)
	go func() {
		mgrDone <- rebootmgr.MainWithOptions(ctx, []string{"run", "--bus", h.bus, "--strategy", "reboot", "--config", dir + "/none.conf",
			"--coordinator-file", dir + "/coordinator.conf", "--state-file", dir + "/intent.json", "--utmp", dir + "/utmp",
			"--warn-delay", "0s", "--machine-id", "0123456789abcdef0123456789abcdef", "--metrics-socket", rmSock}, &out, &out,
			rebootmgr.Options{Metrics: metrics.NewRebootManager()})
	}()
	stopMgr := func() { cancel(); <-mgrDone }
	t.Cleanup(func() {
		if ctx.Err() == nil {
			stopMgr()
		}
	})

	w.publish("v2.bin", "2.0.0", img, false)
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-logind.reboots:
	case <-time.After(60 * time.Second):
		t.Fatalf("no Reboot call after the update\n%s", out.String())
	}
	ue, rm := scrapeUnix(t, sock), scrapeUnix(t, rmSock)
	promtoolCheck(t, "daemon", ue)
	promtoolCheck(t, "reboot manager", rm)
	for _, want := range []string{
		`update_engine_errors_total{code="10",name="PayloadHashMismatchError"} 1`,
		`update_engine_checks_total{result="update_available"} 2`,
		`update_engine_status{status="UPDATE_STATUS_UPDATED_NEED_REBOOT"} 1`,
		`update_engine_info{slot="A",version="1.0.0"} 1`,
	} {
		if !strings.Contains(ue, want+"\n") {
			t.Errorf("daemon scrape lacks %s", want)
		}
	}
	if !regexp.MustCompile(`(?m)^update_engine_operation_duration_seconds_count\{type="REPLACE_XZ"\} [1-9]`).MatchString(ue) {
		t.Error("daemon scrape has no REPLACE_XZ operation durations")
	}
	for _, want := range []string{
		`update_engine_reboot_manager_strategy{strategy="reboot"} 1`,
		`update_engine_reboot_manager_reboots_requested_total 1`,
		`update_engine_reboot_manager_lock_held 0`,
		`update_engine_reboot_manager_lock_wait_seconds_count 0`,
	} {
		if !strings.Contains(rm, want+"\n") {
			t.Errorf("reboot manager scrape lacks %s", want)
		}
	}

	var emitted []string
	for _, f := range append(families(ue), families(rm)...) {
		if strings.HasPrefix(f, "update_engine_") {
			emitted = append(emitted, f)
		}
	}
	documented := readmeMetrics(t)
	slices.Sort(emitted)
	slices.Sort(documented)
	if !slices.Equal(emitted, documented) {
		t.Errorf("README Metrics section lists\n%v\nthe daemon and reboot manager emit\n%v", documented, emitted)
	}

	// Stopped, each removes its socket.
	stopMgr()
	stopDaemon()
	for _, p := range []string{sock, rmSock} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind after stop: %v", p, err)
		}
	}
}
