package daemon

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"

	"github.com/abupdate/update_engine/internal/config"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/cgroup"
	"github.com/abupdate/update_engine/pkg/payload"
	"github.com/abupdate/update_engine/pkg/update1"
)

func randomImage(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 9))
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestIOLimit (root, loop device): with --io-write-bps the passive slot is
// never written faster than the configured rate (+15 %: the kernel's
// accounting slack), D-Bus keeps answering meanwhile, and the metrics
// endpoint shows the bytes written and the throttled time. How close to
// the limit the write gets depends on the machine's load: that figure is a
// bench line (make bench), not an assertion.
func TestIOLimit(t *testing.T) {
	testenv.RequireRoot(t)
	const rate = 4 << 20 // bytes/s
	const size = 10 << 20
	c, disk, img, metricsAddr := limitedDaemon(t, size, 11, true, map[string]string{"UPDATE_ENGINE_IO_WRITE_BPS": fmt.Sprint(rate)})
	skipUnapplied(t, c)
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	var started, finished time.Time
	var slowest time.Duration
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		t0 := time.Now()
		st, err := c.GetStatus(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(t0))
		if started.IsZero() && st.CurrentOperation == "UPDATE_STATUS_DOWNLOADING" {
			started = time.Now()
		}
		if !started.IsZero() && st.CurrentOperation != "UPDATE_STATUS_DOWNLOADING" {
			finished = time.Now()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if finished.IsZero() {
		t.Fatal("the download did not finish")
	}
	wantUpdated(t, c, 30*time.Second, disk, img)
	elapsed := finished.Sub(started).Seconds()
	got := float64(size) / elapsed
	testenv.Bench(t, "daemon_throttled_write_rate_ratio", got/rate, "ratio")
	t.Logf("wrote %d MiB in %.2fs = %.2f MiB/s (limit %d MiB/s); slowest GetStatus %v", size>>20, elapsed, got/(1<<20), rate>>20, slowest)
	if got > rate*1.15 {
		t.Errorf("write rate %.2f MiB/s is over the %d MiB/s limit by more than 15%%", got/(1<<20), rate>>20)
	}
	testenv.Bench(t, "daemon_getstatus_while_throttled_max", float64(slowest.Milliseconds()), "ms")
	if slowest > 10*time.Second {
		t.Errorf("GetStatus took %v while throttled: the engine is blocked behind the write", slowest)
	}
	body := scrape(t, metricsAddr)
	for _, want := range []string{"update_engine_written_bytes_total", "update_engine_throttled_seconds_total", `update_engine_checks_total{result="update_available"} 1`,
		`update_engine_info{slot="A",version="1.0.0"} 1`, "update_engine_io_write_limit_bytes_per_second 4.194304e+06"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestAdaptiveIOLimit (root, loop device): with UPDATE_ENGINE_IO_LIMIT=
// adaptive a full update goes through the adaptive Limiter and lands
// intact; the detailed status (update_engine_client --json) and the
// metrics show the limit, within the floor and the ceiling.
func TestAdaptiveIOLimit(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := cgroup.NewPSI("/proc", "/sys/fs/cgroup"); err != nil {
		t.Skipf("SKIP: %v", err)
	}
	const floor, ceiling = 4 << 20, 64 << 20
	const size = 10 << 20
	c, disk, img, metricsAddr := limitedDaemon(t, size, 12, true, map[string]string{"UPDATE_ENGINE_IO_LIMIT": "adaptive",
		"UPDATE_ENGINE_IO_LIMIT_FLOOR": fmt.Sprint(floor), "UPDATE_ENGINE_IO_LIMIT_CEILING": fmt.Sprint(ceiling)})
	skipUnapplied(t, c)
	d, err := c.Detail(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d.IOLimit != "adaptive" || d.IOWriteLimit < floor || d.IOWriteLimit > ceiling {
		t.Errorf("detail io_limit %q, io_write_limit_bps %d; want adaptive within [%d, %d]", d.IOLimit, d.IOWriteLimit, floor, ceiling)
	}
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantUpdated(t, c, 2*time.Minute, disk, img)
	var limit float64
	for _, line := range strings.Split(scrape(t, metricsAddr), "\n") {
		if v, ok := strings.CutPrefix(line, "update_engine_io_write_limit_bytes_per_second "); ok {
			limit, _ = strconv.ParseFloat(v, 64)
		}
	}
	if limit < floor || limit > ceiling {
		t.Errorf("metric io_write_limit_bytes_per_second = %v, want within [%d, %d]", limit, floor, ceiling)
	}
}

// TestAdaptiveFallback (root, loop device): without PSI the adaptive
// limit becomes the fixed one (UPDATE_ENGINE_IO_WRITE_BPS, else the
// floor), and one log line says why.
func TestAdaptiveFallback(t *testing.T) {
	testenv.RequireRoot(t)
	_, dev := testenv.NewDiskLoop(t, testenv.DiskSpec{SlotSize: slotSize})
	for _, tc := range []struct {
		name  string
		fixed uint64
		want  uint64
	}{{name: "fixed rate set", fixed: 20 << 20, want: 20 << 20}, {name: "floor", want: 8 << 20}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{IOAdaptive: true, IOWriteBPS: tc.fixed,
				IOLimitFloor: 8 << 20, IOLimitCeiling: 1 << 30, IOLimitTarget: 10}
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			l, a, _ := openIOLimit(t.Context(), cfg, dev+"p4", log, t.TempDir(), "/sys/fs/cgroup")
			if l == nil {
				t.Fatalf("no limiter: %s", logs.String())
			}
			defer l.Close()
			if a != nil || l.WriteBPS() != tc.want {
				t.Errorf("controller %v, rate %d; want none, %d", a, l.WriteBPS(), tc.want)
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "adaptive I/O limit unavailable") || !strings.Contains(lines[0], "no I/O pressure information") {
				t.Errorf("logs %q: want one line saying PSI is missing", lines)
			}
		})
	}
}

// limitedDaemon publishes a random image of size bytes (from seed) as
// 2.0.0 and runs the daemon on a loop disk with the I/O limit overrides
// and metrics on; it returns the client, the disk, the image and the
// metrics address. With alone, on cgroup v2, the test's own child
// processes (its dbus-daemon) are moved out of the cgroup the daemon runs
// in, so that it is alone there as under its systemd unit.
func limitedDaemon(t *testing.T, size int, seed uint64, alone bool, overrides map[string]string) (*update1.Client, string, []byte, string) {
	t.Helper()
	w := newOmaha(t)
	// Random bytes do not compress: REPLACE operations, which also keeps
	// the payload cheap to make and to decode under QEMU TCG (make vmtest
	// runs these tests in a guest).
	w.comp = payload.CompressNone
	img := randomImage(size, seed)
	w.publish("v2.bin", "2.0.0", img, false)
	disk, dev := testenv.NewDiskLoop(t, testenv.DiskSpec{SlotSize: slotSize})
	h := newHost(t, dev)
	if alone {
		isolateChildren(t)
	}
	o := h.options(w.url())
	for k, v := range overrides {
		o.Overrides[k] = v
	}
	addr := freeAddr(t)
	o.Overrides["UPDATE_ENGINE_METRICS_LISTEN"] = addr
	runDaemon(t, o)
	return client(t, h.bus), disk, img, addr
}

// wantUpdated waits for the update to end and fails unless it reached
// UPDATED_NEED_REBOOT with img in slot B.
func wantUpdated(t *testing.T, c *update1.Client, timeout time.Duration, disk string, img []byte) {
	t.Helper()
	st := waitOp(t, c, timeout, "UPDATE_STATUS_UPDATED_NEED_REBOOT", "UPDATE_STATUS_IDLE")
	if st.CurrentOperation != "UPDATE_STATUS_UPDATED_NEED_REBOOT" {
		d, _ := c.Detail(t.Context())
		t.Fatalf("update failed: %+v", d)
	}
	if got := readSlot(t, disk, "B", len(img)); !bytes.Equal(got, img) {
		t.Fatal("slot B differs")
	}
}

// scrape returns the metrics page at addr.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	if _, err := body.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return body.String()
}

// skipUnapplied: a limit the host cannot give is reported in the detailed
// status; on cgroup v2 that is the host's setup (no io delegated to the
// test's cgroup, or the cgroup shared with a shell or a CI job), a skip;
// on v1 the limit must apply.
func skipUnapplied(t *testing.T, c *update1.Client) {
	t.Helper()
	d, err := c.Detail(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d.IOLimitError == "" {
		return
	}
	if cgroups.Mode() == cgroups.Unified {
		t.Skipf("SKIP: cgroup v2 host without an io-limited group for the test: %s "+
			"(run the test binary alone in a unit with Delegate=io: systemd-run -p Delegate=io --wait --pipe ...)", d.IOLimitError)
	}
	t.Fatalf("the I/O limit was not applied: %s", d.IOLimitError)
}

// ownV2Cgroup is this process's cgroup v2 directory ("" on v1 or in the
// root cgroup, where the no-internal-processes rule does not apply).
func ownV2Cgroup(t *testing.T) string {
	t.Helper()
	if cgroups.Mode() != cgroups.Unified {
		return ""
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if g, ok := strings.CutPrefix(line, "0::"); ok && g != "/" {
			return filepath.Join("/sys/fs/cgroup", g)
		}
	}
	return ""
}

// isolateChildren (cgroup v2): moves this process's children that share
// its cgroup O (the test's dbus-daemon) into a leaf group O/ue-test-helpers-<pid>,
// and back at cleanup (after the daemon, registered later, has stopped and
// its limiter has left O as it found it). The leaf sets no io limit, so
// the limiter's Close may turn io off in O again.
func isolateChildren(t *testing.T) {
	t.Helper()
	odir := ownV2Cgroup(t)
	if odir == "" {
		return
	}
	procs, _ := os.ReadFile(filepath.Join(odir, "cgroup.procs"))
	self := strconv.Itoa(os.Getpid())
	var kids []string
	for _, p := range strings.Fields(string(procs)) {
		stat, err := os.ReadFile("/proc/" + p + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces; cut at the last ')'.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) > 1 && f[1] == self {
			kids = append(kids, p)
		}
	}
	if len(kids) == 0 {
		return
	}
	leaf := filepath.Join(odir, "ue-test-helpers-"+self)
	if err := os.Mkdir(leaf, 0o755); err != nil {
		t.Logf("isolating the test's helpers: %v", err)
		return
	}
	t.Cleanup(func() {
		left, _ := os.ReadFile(filepath.Join(leaf, "cgroup.procs"))
		for _, p := range strings.Fields(string(left)) {
			if err := os.WriteFile(filepath.Join(odir, "cgroup.procs"), []byte(p), 0); err != nil {
				t.Logf("moving helper %s back to %s: %v", p, odir, err)
			}
		}
		if err := os.Remove(leaf); err != nil {
			t.Errorf("removing %s: %v", leaf, err)
		}
	})
	for _, p := range kids {
		if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(p), 0); err != nil {
			t.Logf("moving helper %s to %s: %v", p, leaf, err)
		}
	}
}

// TestIOLimitUnapplied (cgroup v2, root, io offered to the test's cgroup):
// when the daemon shares its cgroup with another process (here the test's
// dbus-daemon, as in a login session or a CI job), the kernel will not
// give it an io-limited group. The user sees it: the detailed status
// (update_engine_client -status --json) says so with the fix, the metric
// update_engine_io_limit_error is 1, and the update still completes,
// unthrottled.
func TestIOLimitUnapplied(t *testing.T) {
	testenv.RequireRoot(t)
	odir := ownV2Cgroup(t)
	if odir == "" {
		t.Skip("SKIP: needs a cgroup v2 host and a non-root cgroup (v1 has no such failure: only the writer thread moves)")
	}
	if ctrl, _ := os.ReadFile(filepath.Join(odir, "cgroup.controllers")); !strings.Contains(" "+string(ctrl)+" ", " io ") {
		t.Skipf("SKIP: %s offers no io controller (%q); needs Delegate=io", odir, strings.TrimSpace(string(ctrl)))
	}
	const size = 4 << 20
	c, disk, img, metricsAddr := limitedDaemon(t, size, 13, false, map[string]string{"UPDATE_ENGINE_IO_WRITE_BPS": fmt.Sprint(1 << 20)})
	d, err := c.Detail(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d.IOLimit != "" || !strings.Contains(d.IOLimitError, "shares its cgroup") || !strings.Contains(d.IOLimitError, "Delegate=io") {
		t.Errorf("detail io_limit %q, io_limit_error %q: want no limit and an error saying the cgroup is shared and what to do", d.IOLimit, d.IOLimitError)
	}
	if body := scrape(t, metricsAddr); !strings.Contains(body, "\nupdate_engine_io_limit_error 1\n") {
		t.Errorf("metrics lack update_engine_io_limit_error 1")
	}
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantUpdated(t, c, time.Minute, disk, img)
}

// TestIOLimitErrorLogged: a limit that cannot be applied is logged at
// error level with what to do, and returned for the status and metrics.
func TestIOLimitErrorLogged(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	dir := t.TempDir() // not a block device: cgroup.New fails before touching any cgroup
	l, a, err := openIOLimit(t.Context(), &config.Config{IOWriteBPS: 4 << 20}, dir, log, t.TempDir(), t.TempDir())
	if l != nil || a != nil || err == nil || !strings.Contains(err.Error(), "4194304 bytes/s is not applied") {
		t.Fatalf("openIOLimit = %v, %v, %v; want no limiter and the error", l, a, err)
	}
	if out := logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "I/O limit NOT applied") || !strings.Contains(out, "fix=") {
		t.Errorf("log %q: want an error-level line with the fix", out)
	}
	for _, c := range []struct {
		err  error
		want string
	}{{cgroup.ErrShared, "its own systemd service with Delegate=io"}, {cgroup.ErrUnavailable, "Delegate=io"}} {
		if got := limitFailed(log, "x", fmt.Errorf("wrapped: %w", c.err)); !strings.Contains(got.Error(), c.want) {
			t.Errorf("limitFailed(%v) = %q, want the fix %q", c.err, got, c.want)
		}
	}
}
