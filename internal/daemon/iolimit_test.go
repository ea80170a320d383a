package daemon

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
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
	w := newOmaha(t)
	img := randomImage(size, 11)
	w.publish("v2.bin", "2.0.0", img, false)
	disk, dev := testenv.NewDiskLoop(t, testenv.DiskSpec{SlotSize: slotSize})
	h := newHost(t, dev)
	o := h.options(w.url())
	o.Overrides["UPDATE_ENGINE_IO_WRITE_BPS"] = fmt.Sprint(rate)
	metricsAddr := freeAddr(t)
	o.Overrides["UPDATE_ENGINE_METRICS_LISTEN"] = metricsAddr
	runDaemon(t, o)
	c := client(t, h.bus)
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
	st := waitOp(t, c, 30*time.Second, "UPDATE_STATUS_UPDATED_NEED_REBOOT", "UPDATE_STATUS_IDLE")
	if st.CurrentOperation != "UPDATE_STATUS_UPDATED_NEED_REBOOT" {
		d, _ := c.Detail(t.Context())
		t.Fatalf("update failed: %+v", d)
	}
	if got := readSlot(t, disk, "B", size); !bytes.Equal(got, img) {
		t.Fatal("slot B differs")
	}
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
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	for _, want := range []string{"update_engine_written_bytes_total", "update_engine_throttled_seconds_total", `update_engine_checks_total{result="update_available"} 1`,
		`update_engine_info{slot="A",version="1.0.0"} 1`} {
		if !strings.Contains(body.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
