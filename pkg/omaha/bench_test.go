package omaha

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
)

// BenchmarkDownload reads a 64 MiB payload over loopback through
// OpenPayload (watchdog, Range bookkeeping) and through a bare http.Get of
// the same server (best of three each), and reports the ratio.
func BenchmarkDownload(b *testing.B) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 4<<20) // 64 MiB
	s := newCountingServer(b, func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "p", time.Time{}, bytes.NewReader(data))
	})
	hc, _ := NewHTTPClient(TransportOptions{})
	defer hc.CloseIdleConnections()
	c := &Client{HTTP: hc}
	measure := func(open func() io.ReadCloser) float64 {
		start := time.Now()
		body := open()
		n, err := io.Copy(io.Discard, body)
		body.Close()
		if err != nil || n != int64(len(data)) {
			b.Fatalf("read %d: %v", n, err)
		}
		return float64(n) / time.Since(start).Seconds() / (1 << 20)
	}
	get := func() io.ReadCloser {
		resp, err := hc.Get(s.URL)
		if err != nil {
			b.Fatal(err)
		}
		return resp.Body
	}
	measure(get) // warm up the connection and the page cache
	open := func() io.ReadCloser {
		p, err := c.OpenPayload(b.Context(), s.URL, 0)
		if err != nil {
			b.Fatal(err)
		}
		return p.Body
	}
	for b.Loop() {
		// Best of three, interleaved: the machine is shared and noisy.
		var raw, ours float64
		for range 3 {
			raw = max(raw, measure(get))
			ours = max(ours, measure(open))
		}
		testenv.Bench(b, "omaha_download_raw_http", raw, "MiB/s")
		testenv.Bench(b, "omaha_download_openpayload", ours, "MiB/s")
		testenv.Bench(b, "omaha_download_ratio", ours/raw, "x")
	}
}

// BenchmarkParseResponse parses the Flatcar-shaped golden response.
func BenchmarkParseResponse(b *testing.B) {
	body, err := readGolden("response_update_flatcar.xml")
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	n := 0
	for b.Loop() {
		for range 1000 {
			if _, err := ParseResponse(body); err != nil {
				b.Fatal(err)
			}
			n++
		}
	}
	testenv.Bench(b, "omaha_parse_response", float64(time.Since(start).Microseconds())/float64(n), "us/op")
}
