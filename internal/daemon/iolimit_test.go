package daemon

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/config"
	"github.com/abupdate/update_engine/internal/dbusapi"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/cgroup"
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
	c, disk, img, metricsAddr := limitedDaemon(t, size, 11, map[string]string{"UPDATE_ENGINE_IO_WRITE_BPS": fmt.Sprint(rate)})
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
	c, disk, img, metricsAddr := limitedDaemon(t, size, 12, map[string]string{"UPDATE_ENGINE_IO_LIMIT": "adaptive",
		"UPDATE_ENGINE_IO_LIMIT_FLOOR": fmt.Sprint(floor), "UPDATE_ENGINE_IO_LIMIT_CEILING": fmt.Sprint(ceiling)})
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
// metrics address.
func limitedDaemon(t *testing.T, size int, seed uint64, overrides map[string]string) (*dbusapi.Client, string, []byte, string) {
	t.Helper()
	w := newOmaha(t)
	img := randomImage(size, seed)
	w.publish("v2.bin", "2.0.0", img, false)
	disk, dev := testenv.NewDiskLoop(t, testenv.DiskSpec{SlotSize: slotSize})
	h := newHost(t, dev)
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
func wantUpdated(t *testing.T, c *dbusapi.Client, timeout time.Duration, disk string, img []byte) {
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
