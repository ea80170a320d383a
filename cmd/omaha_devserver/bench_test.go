package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/omaha/server"
)

// BenchmarkFleet runs the built omaha_devserver as its own process (with
// a state file, request logging on, rollout 50%) and has 10,000 distinct
// machines check in over loopback from 32 concurrent Go clients: each
// sends an update check with a ping; those offered the update then send
// 13/1, 14/1 and 3/1, or (every 100th) 3/0 with an error code. It reports
// requests/s sustained, p50/p99 latency, the server's peak and final RSS
// (from /proc), the state file's size, and one fleet page render; any
// error fails it.
func BenchmarkFleet(b *testing.B) {
	const machines, workers = 10000, 32
	tmp := b.TempDir()
	bin := filepath.Join(tmp, "omaha_devserver")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/abupdate/update_engine/cmd/omaha_devserver").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	dir := payloadDir(b, "3850.0.0")
	state := filepath.Join(tmp, "state.db")

	cmd := exec.Command(bin, "--dir", dir, "--listen", "127.0.0.1:0", "--state", state, "--rollout", "50")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Process.Kill()
	addrc := make(chan string, 1)
	go func() { // read the address, then drain the request log
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if _, rest, ok := strings.Cut(sc.Text(), "listening on http://"); ok {
				addrc <- strings.TrimSuffix(rest, "/v1/update/")
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(2 * time.Minute):
		b.Fatal("server did not start")
	}

	ids := make([]string, machines)
	for i := range ids {
		ids[i] = fmt.Sprintf("%x", sha256.Sum256(fmt.Appendf(nil, "bench-%d", i)))[:32]
	}
	hc, err := omaha.NewHTTPClient(omaha.TransportOptions{})
	if err != nil {
		b.Fatal(err)
	}
	hc.Transport.(*http.Transport).MaxIdleConnsPerHost = workers
	defer hc.CloseIdleConnections()
	c := &omaha.Client{Server: "http://" + addr + "/v1/update/", HTTP: hc, RequestTimeout: time.Minute}

	for b.Loop() {
		var (
			mu        sync.Mutex
			lat       []time.Duration
			errs      atomic.Int64
			offered   atomic.Int64
			firstErrs []string
		)
		next := atomic.Int64{}
		timed := func(f func() error) {
			t0 := time.Now()
			err := f()
			d := time.Since(t0)
			mu.Lock()
			lat = append(lat, d)
			if err != nil {
				errs.Add(1)
				if len(firstErrs) < 5 {
					firstErrs = append(firstErrs, err.Error())
				}
			}
			mu.Unlock()
		}
		start := time.Now()
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= machines {
						return
					}
					p := omaha.Params{Version: "3815.2.0", Track: "stable", MachineID: ids[i], Board: "amd64-usr", Arch: "x86_64",
						BootID: "4f1c2a4e-8e0b-4b0d-9a57-2b1bd1c0a7d3", AlephVersion: "3510.2.0"}
					var plan *omaha.Plan
					timed(func() (err error) { plan, err = c.Check(b.Context(), p); return err })
					if plan == nil || plan.NoUpdate {
						continue
					}
					offered.Add(1)
					evs := []omaha.Event{omaha.EventDownloadStarted, omaha.EventDownloadFinished, omaha.EventUpdateApplied}
					if i%100 == 0 {
						evs = []omaha.Event{omaha.EventDownloadStarted, omaha.ErrorEvent(int32(omaha.DownloadTransferError | omaha.FlagTestOmahaURL))}
					}
					for _, ev := range evs {
						timed(func() error { return c.SendEvent(b.Context(), p, ev) })
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		slices.Sort(lat)
		pct := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
		testenv.Bench(b, "devserver_fleet_requests", float64(len(lat)), "requests")
		testenv.Bench(b, "devserver_fleet_rate", float64(len(lat))/elapsed.Seconds(), "requests/s")
		testenv.Bench(b, "devserver_fleet_p50", pct(0.50), "ms")
		testenv.Bench(b, "devserver_fleet_p99", pct(0.99), "ms")
		testenv.Bench(b, "devserver_fleet_errors", float64(errs.Load()), "errors")
		hwm, rss := procMemKiB(b, cmd.Process.Pid, "VmHWM"), procMemKiB(b, cmd.Process.Pid, "VmRSS")
		testenv.Bench(b, "devserver_fleet_rss_peak", float64(hwm)/1024, "MiB")
		testenv.Bench(b, "devserver_fleet_rss_end", float64(rss)/1024, "MiB")
		if st, err := os.Stat(state); err == nil {
			testenv.Bench(b, "devserver_fleet_state_file", float64(st.Size())/(1<<20), "MiB")
		}
		if n := errs.Load(); n != 0 {
			b.Fatalf("%d errors, first: %q", n, firstErrs)
		}

		// The fleet as the server saw it, and one page render.
		t0 := time.Now()
		resp, err := hc.Get("http://" + addr + "/")
		if err != nil {
			b.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		testenv.Bench(b, "devserver_fleet_page", float64(time.Since(t0).Microseconds())/1000, "ms")
		resp, err = hc.Get("http://" + addr + "/api/fleet")
		if err != nil {
			b.Fatal(err)
		}
		var f server.Fleet
		err = json.NewDecoder(resp.Body).Decode(&f)
		resp.Body.Close()
		if err != nil || f.Hosts != machines || len(f.Groups) != 1 || len(f.Groups[0].LastErrors) == 0 ||
			!strings.Contains(string(page), "DownloadTransferError(9)") {
			b.Fatalf("fleet after the run: %+v %v", f, err)
		}
		b.Logf("offered %d of %d (rollout 50%%), on latest %d, in %v", offered.Load(), machines, f.Groups[0].OnLatest, elapsed)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		b.Errorf("server exit: %v", err)
	}
}

// procMemKiB reads a "VmHWM:  1234 kB" line of /proc/pid/status.
func procMemKiB(b *testing.B, pid int, field string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
