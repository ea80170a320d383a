package daemon

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/cgroup"
	"github.com/abupdate/update_engine/pkg/payload"
)

// BenchmarkAdaptiveIOLimit (root, fio, PSI): what each I/O limit costs a
// latency-sensitive reader beside the update, and what it costs the
// update. On one loop-attached disk (direct I/O onto its backing file,
// so both reach the real disk under it), fio reads 4 KiB at random with
// O_DIRECT from USR-A at a steady 200 IOPS (a service answering requests,
// not a saturating scan: PSI measures a share of time, which a reader
// that never pauses fills whatever the latency), in a cgroup v2 group of
// its own as a service has. The daemon applies the same full update
// (uncompressed, so the disk is the bottleneck, not decompression) to
// USR-B: with no limit, with each fixed limit, and adaptive. fio's
// completion-latency percentiles are taken over the whole update. fio
// runs under SCHED_FIFO (see fioSched).
//
// Printed: fio's p50 and p99 alone (the baseline), then per mode the p99
// as a ratio to the baseline and the update time as a ratio to the
// unlimited one. BENCH_ADAPTIVE_MB sets the image size (default 1024),
// BENCH_ADAPTIVE_FIXED_MB the fixed limits (default "16,64"),
// BENCH_ADAPTIVE_TARGET the adaptive PSI target in percent (default 10),
// BENCH_ADAPTIVE_RUNS the rounds (default 3).
func BenchmarkAdaptiveIOLimit(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireTool(b, "fio", "losetup", "dd")
	psi, err := cgroup.NewPSI("/proc", "/sys/fs/cgroup")
	if err != nil {
		b.Skipf("SKIP: %v", err)
	}
	mb := envInt(b, "BENCH_ADAPTIVE_MB", 1024)
	fixed := strings.Split(envStr("BENCH_ADAPTIVE_FIXED_MB", "16,64"), ",")
	target := envStr("BENCH_ADAPTIVE_TARGET", "10")
	runs := envInt(b, "BENCH_ADAPTIVE_RUNS", 3)
	size := mb << 20

	w := newOmaha(b)
	w.comp = payload.CompressNone
	w.publish("v2.bin", "2.0.0", randomImage(size, 31), false)
	_, dev := testenv.NewDiskLoop(b, testenv.DiskSpec{SlotSize: int64(size)})
	if out, err := exec.Command("losetup", "--direct-io=on", dev).CombinedOutput(); err != nil {
		b.Logf("loop device without direct I/O (%v: %s)", err, out)
	}
	// USR-A gets real blocks to read (a hole in the backing file would
	// be answered without the disk).
	if out, err := exec.Command("dd", "if=/dev/urandom", "of="+dev+"p3", "bs=1M", fmt.Sprint("count=", mb), "oflag=direct", "status=none").CombinedOutput(); err != nil {
		b.Fatalf("filling USR-A: %v: %s", err, out)
	}
	group := filepath.Join(psi.Root, path.Dir(psi.Self), fmt.Sprintf("ue-bench-fio-%d", os.Getpid()))
	if err := os.Mkdir(group, 0o755); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.Remove(group) })
	fio := func() (stop func() (p50, p99 float64)) {
		out := filepath.Join(b.TempDir(), "fio.json")
		cmd := exec.Command("sh", "-c", "echo $$ > "+filepath.Join(group, "cgroup.procs")+" && exec "+fioSched+"fio --name=lat --filename="+dev+"p3"+
			" --rw=randread --bs=4k --direct=1 --ioengine=psync --rate_iops=200 --time_based --runtime=3600"+
			" --output-format=json --output="+out)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		return func() (float64, float64) {
			_ = cmd.Process.Signal(syscall.SIGINT)
			err := cmd.Wait() // fio stopped by SIGINT exits 128 after writing its report
			if _, ok := err.(*exec.ExitError); err != nil && !ok {
				b.Fatalf("fio: %v", err)
			}
			return fioPercentiles(b, out)
		}
	}

	modes := []struct{ name, limit string }{{name: "unlimited"}}
	for _, f := range fixed {
		modes = append(modes, struct{ name, limit string }{"fixed_" + strings.TrimSpace(f) + "MiBps", strings.TrimSpace(f) + "M"})
	}
	modes = append(modes, struct{ name, limit string }{"adaptive", "adaptive"})
	// update runs one update in mode m beside fio: its time, fio's p99
	// and the limits update_engine_client --json showed every 100 ms.
	update := func(name, limit string) (time.Duration, float64, []uint64) {
		h := newHost(b, dev)
		o := h.options(w.url())
		if limit != "" {
			o.Overrides["UPDATE_ENGINE_IO_LIMIT"] = limit
			o.Overrides["UPDATE_ENGINE_IO_LIMIT_TARGET"] = target
		}
		stopDaemon := runDaemon(b, o)
		defer stopDaemon()
		c := client(b, h.bus)
		stop := fio()
		t0 := time.Now()
		if err := c.AttemptUpdate(b.Context()); err != nil {
			b.Fatal(err)
		}
		limits, traced := make(chan []uint64, 1), make(chan struct{})
		go func() {
			var seen []uint64
			for {
				select {
				case <-traced:
					limits <- seen
					return
				case <-time.After(100 * time.Millisecond):
				}
				if d, err := c.Detail(b.Context()); err == nil && d.IOWriteLimit > 0 {
					seen = append(seen, d.IOWriteLimit)
				}
			}
		}()
		st := waitOp(b, c, 30*time.Minute, "UPDATE_STATUS_UPDATED_NEED_REBOOT", "UPDATE_STATUS_IDLE")
		took := time.Since(t0)
		close(traced)
		_, p99 := stop()
		if st.CurrentOperation != "UPDATE_STATUS_UPDATED_NEED_REBOOT" {
			b.Fatalf("%s: update failed: %+v", name, st)
		}
		return took, p99, <-limits
	}

	// Rounds interleave the modes, so a change of the host's load hits
	// them alike; the figures are medians over the rounds.
	// Before each measurement the host's load settles (BENCH_ADAPTIVE_SETTLE,
	// default 0.5), so a measurement's own load is not carried into the
	// next; each figure is printed with the highest 1-minute load at the
	// end of the measurements it comes from.
	settle := func() { testenv.SettleLoad(b, envFloat(b, "BENCH_ADAPTIVE_SETTLE", 0.5), 2*time.Minute) }
	var alone50, alone99 []float64
	took := map[string][]float64{}
	p99 := map[string][]float64{}
	load := map[string]float64{}
	var seen []uint64
	for r := 0; r < runs; r++ {
		settle()
		stop := fio()
		time.Sleep(15 * time.Second) // the baseline: fio alone
		p50, p := stop()
		alone50, alone99 = append(alone50, p50), append(alone99, p)
		load["alone"] = max(load["alone"], testenv.Load1Value())
		for _, m := range modes {
			settle()
			d, p, l := update(m.name, m.limit)
			load[m.name] = max(load[m.name], testenv.Load1Value())
			took[m.name] = append(took[m.name], d.Seconds())
			p99[m.name] = append(p99[m.name], p)
			if m.limit == "adaptive" {
				seen = append(seen, l...)
			}
			b.Logf("round %d %s: %.2f s, fio p99 %.0f us (alone %.0f us), load1 %.2f", r, m.name, d.Seconds(), p, alone99[r], testenv.Load1Value())
		}
	}
	worst := 0.0
	for _, l := range load {
		worst = max(worst, l)
	}
	base, unlimited := median(alone99), median(took["unlimited"])
	testenv.BenchAt(b, "adaptive_rounds", float64(runs), "n", worst)
	testenv.BenchAt(b, "adaptive_fio_alone_p50", median(alone50), "us", load["alone"])
	testenv.BenchAt(b, "adaptive_fio_alone_p99", base, "us", load["alone"])
	for _, m := range modes {
		n, l := "adaptive_update_"+m.name, max(load[m.name], load["alone"], load["unlimited"])
		testenv.BenchAt(b, n+"_seconds", median(took[m.name]), "s", load[m.name])
		testenv.BenchAt(b, n+"_vs_unlimited", median(took[m.name])/unlimited, "x", l)
		testenv.BenchAt(b, n+"_fio_p99", median(p99[m.name]), "us", load[m.name])
		testenv.BenchAt(b, n+"_fio_p99_vs_alone", median(p99[m.name])/base, "x", l)
	}
	if len(seen) > 0 {
		lo, sum := seen[0], 0.0
		for _, l := range seen {
			lo, sum = min(lo, l), sum+float64(l)
		}
		testenv.BenchAt(b, "adaptive_update_adaptive_limit_min", float64(lo)/(1<<20), "MiB/s", load["adaptive"])
		testenv.BenchAt(b, "adaptive_update_adaptive_limit_mean", sum/float64(len(seen))/(1<<20), "MiB/s", load["adaptive"])
	}
	// The yardstick is the fixed limit that gives the same p99.
	// A fixed limit whose p99 is no better than the adaptive one's is at
	// least that fast, so the speed-up over it is a lower bound; the
	// slowest such limit gives the tightest one.
	ap99, atook, match := median(p99["adaptive"]), median(took["adaptive"]), 0.0
	for _, m := range modes[1 : len(modes)-1] {
		if median(p99[m.name]) >= ap99 {
			match = max(match, median(took[m.name]))
		}
	}
	if match > 0 {
		testenv.BenchAt(b, "adaptive_speedup_vs_fixed_with_p99_no_better", match/atook, "x", worst)
	} else {
		b.Logf("every fixed limit gave fio a better p99 than the adaptive one (%.0f us)", ap99)
	}
}

// median of xs (not empty); it sorts xs.
func median(xs []float64) float64 {
	slices.Sort(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

// fioSched runs fio under SCHED_FIFO (BENCH_ADAPTIVE_FIO_RT=0: normally),
// so its latencies are the disk's and not the waits for a CPU of a loaded
// shared host, which no I/O limit changes.
var fioSched = map[bool]string{true: "chrt -f 10 ", false: ""}[os.Getenv("BENCH_ADAPTIVE_FIO_RT") != "0"]

// fioPercentiles reads p50 and p99 completion latency (µs) of the first
// job from fio's JSON output (which fio starts with a line of its own
// when stopped by a signal).
func fioPercentiles(b *testing.B, file string) (p50, p99 float64) {
	raw, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	if i := strings.IndexByte(string(raw), '{'); i > 0 {
		raw = raw[i:]
	}
	var out struct {
		Jobs []struct {
			Read struct {
				Clat struct {
					Percentile map[string]float64 `json:"percentile"`
				} `json:"clat_ns"`
			} `json:"read"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Jobs) == 0 {
		b.Fatalf("fio output %s: %v", file, err)
	}
	p := out.Jobs[0].Read.Clat.Percentile
	return p["50.000000"] / 1e3, p["99.000000"] / 1e3
}

func envStr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func envFloat(b *testing.B, key string, def float64) float64 {
	v, err := strconv.ParseFloat(envStr(key, strconv.FormatFloat(def, 'g', -1, 64)), 64)
	if err != nil {
		b.Fatalf("%s: %v", key, err)
	}
	return v
}

func envInt(b *testing.B, key string, def int) int {
	v, err := strconv.Atoi(envStr(key, strconv.Itoa(def)))
	if err != nil {
		b.Fatalf("%s: %v", key, err)
	}
	return v
}
