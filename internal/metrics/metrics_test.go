package metrics

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/update"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/update1"
)

// scrape fetches url and returns every sample as "name{labels}" → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestScrapeOverLoopback(t *testing.T) {
	m := New()
	ln, err := Listen("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, ln) }()
	url := "http://" + ln.Addr().String() + "/metrics"

	at := time.Unix(1700000000, 500000000)
	m.CheckDone(update.CheckNoUpdate, at.Add(-time.Hour))
	m.CheckDone(update.CheckUpdateAvailable, at)
	m.AddDownloaded(1000)
	m.AddDownloaded(24)
	m.AddWritten(4096)
	m.AddWritten(-1) // ignored
	m.ObserveApply(8<<20, 2*time.Second)
	m.ObserveOperation("REPLACE_XZ", 3*time.Millisecond)
	m.ObserveOperation("REPLACE_XZ", 5*time.Millisecond)
	m.ObserveOperation("ZERO", time.Microsecond)
	m.AddThrottled(1500 * time.Millisecond)
	m.SetIOLimit(64<<20, 0.25)
	m.SetIOLimitError(true)
	m.Resumed()
	m.Resumed()
	m.Error(omaha.DownloadTransferError | omaha.FlagTestOmahaURL)
	m.Error(omaha.HTTPCode(404))
	m.SetStatus(update1.Downloading)
	m.ObserveFlipToGood(90 * time.Second)
	m.SetInfo("3815.2.0", "A")
	m.SetInfo("3850.0.0", "B") // replaces, never adds

	got := scrape(t, url)
	want := map[string]float64{
		`update_engine_checks_total{result="no_update"}`:                             1,
		`update_engine_checks_total{result="update_available"}`:                      1,
		`update_engine_checks_total{result="error"}`:                                 0,
		`update_engine_last_check_timestamp_seconds`:                                 1700000000.5,
		`update_engine_downloaded_bytes_total`:                                       1024,
		`update_engine_written_bytes_total`:                                          4096,
		`update_engine_apply_throughput_bytes_per_second`:                            4 << 20,
		`update_engine_operation_duration_seconds_count{type="REPLACE_XZ"}`:          2,
		`update_engine_operation_duration_seconds_sum{type="REPLACE_XZ"}`:            0.008,
		`update_engine_operation_duration_seconds_count{type="ZERO"}`:                1,
		`update_engine_throttled_seconds_total`:                                      1.5,
		`update_engine_resumes_total`:                                                2,
		`update_engine_io_write_limit_bytes_per_second`:                              64 << 20,
		`update_engine_io_pressure_ratio`:                                            0.25,
		`update_engine_io_limit_error`:                                               1,
		`update_engine_errors_total{code="9",name="DownloadTransferError"}`:          1,
		`update_engine_errors_total{code="2404",name="OmahaRequestHTTPResponse404"}`: 1,
		`update_engine_status{status="UPDATE_STATUS_DOWNLOADING"}`:                   1,
		`update_engine_status{status="UPDATE_STATUS_IDLE"}`:                          0,
		`update_engine_status_code`:                                                  3,
		`update_engine_flip_to_good_seconds`:                                         90,
		`update_engine_info{slot="B",version="3850.0.0"}`:                            1,
	}
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("missing sample %s", k)
			continue
		}
		if diff := g - v; diff > 1e-9 || diff < -1e-9 {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
	if _, ok := got[`update_engine_info{slot="A",version="3815.2.0"}`]; ok {
		t.Error("SetInfo kept the old labels")
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("Go runtime collector missing")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := http.Get(url); err == nil {
		t.Error("server still answering after Serve returned")
	}
}

func TestListenRefusesRemote(t *testing.T) {
	tests := []struct {
		name        string
		addr        string
		allowRemote bool
		wantErr     error
	}{
		{name: "ipv4 loopback", addr: "127.0.0.1:0"},
		{name: "ipv4 loopback other", addr: "127.0.0.2:0"},
		{name: "localhost", addr: "localhost:0"},
		{name: "all interfaces", addr: ":0", wantErr: ErrNotLoopback},
		{name: "unspecified v4", addr: "0.0.0.0:0", wantErr: ErrNotLoopback},
		{name: "unspecified v6", addr: "[::]:0", wantErr: ErrNotLoopback},
		{name: "hostname", addr: "example.com:9100", wantErr: ErrNotLoopback},
		{name: "all interfaces allowed", addr: "127.0.0.1:0", allowRemote: true},
		{name: "unspecified allowed", addr: "0.0.0.0:0", allowRemote: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := Listen(tc.addr, tc.allowRemote)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Listen(%q) err = %v, want %v", tc.addr, err, tc.wantErr)
			}
			if ln != nil {
				ln.Close()
			}
		})
	}
	if err := New().ListenAndServe(t.Context(), "0.0.0.0:0", false); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("ListenAndServe on all interfaces = %v, want ErrNotLoopback", err)
	}
	if _, err := Listen("no-port", false); err == nil {
		t.Error("Listen without port succeeded")
	}
}

func TestNilMetricsIsNoop(t *testing.T) {
	var m *Metrics
	m.CheckDone(update.CheckError, time.Now())
	m.AddDownloaded(1)
	m.AddWritten(1)
	m.ObserveApply(1, time.Second)
	m.ObserveOperation("ZERO", time.Second)
	m.AddThrottled(time.Second)
	m.SetIOLimit(1, 1)
	m.Resumed()
	m.Error(omaha.Error)
	m.SetStatus(update1.Idle)
	m.ObserveFlipToGood(time.Second)
	if m.Handler() == nil {
		t.Fatal("nil Metrics has nil Handler")
	}
}
