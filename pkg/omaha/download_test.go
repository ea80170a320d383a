package omaha

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func payloadBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(7, 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func serve(w http.ResponseWriter, r *http.Request, data []byte) {
	http.ServeContent(w, r, "p.gz", time.Time{}, bytes.NewReader(data))
}

// A payload server that dies mid-download; the resume continues with
// Range and the bytes add up.
func TestDownloadResumeAfterServerDies(t *testing.T) {
	data := payloadBytes(1 << 20)
	var mu sync.Mutex // guards ranges
	var ranges []string
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		first := len(ranges) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.Write(data[:300_000])
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler) // the server dies mid-download
		}
		serve(w, r, data)
	})
	c := newTestClient(t, "")
	ctx := testCtx(t)
	p, err := c.OpenPayload(ctx, s.URL+"/p.gz", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	_, err = io.Copy(&got, p.Body)
	p.Body.Close()
	if err == nil || got.Len() >= len(data) {
		t.Fatalf("first download: %d bytes, err %v; want a broken transfer", got.Len(), err)
	}
	if p.Resumed || p.Total != int64(len(data)) {
		t.Errorf("first download %+v", p)
	}
	p, err = c.OpenPayload(ctx, s.URL+"/p.gz", int64(got.Len()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Body.Close()
	if !p.Resumed || p.RangeIgnored || p.Total != int64(len(data)) || p.Offset != int64(got.Len()) {
		t.Errorf("resumed download %+v", p)
	}
	if _, err := io.Copy(&got, p.Body); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("resumed payload differs (%d bytes)", got.Len())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ranges) != 2 || ranges[0] != "" || ranges[1] != fmt.Sprintf("bytes=%d-", len(data)-(len(data)-300_000)) {
		t.Errorf("Range headers %q", ranges)
	}
}

func TestDownloadRangeAnswers(t *testing.T) {
	data := payloadBytes(64 << 10)
	const off = 10_000
	tests := []struct {
		name        string
		handler     http.HandlerFunc
		wantErr     error
		wantIgnored bool
	}{
		{"206", func(w http.ResponseWriter, r *http.Request) { serve(w, r, data) }, nil, false},
		{"200 ignores Range", func(w http.ResponseWriter, r *http.Request) { w.Write(data) }, nil, true},
		{"206 at the wrong offset", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(data)-1, len(data)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data)
		}, ErrBadContentRange, false},
		{"206 without Content-Range", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[off:])
		}, ErrBadContentRange, false},
		{"416", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", http.StatusRequestedRangeNotSatisfiable)
		}, ErrRangeNotSatisfiable, false},
		{"404", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, ErrHTTPStatus, false},
		{"200 shorter than the offset", func(w http.ResponseWriter, r *http.Request) { w.Write(data[:off/2]) }, io.EOF, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newCountingServer(t, tt.handler)
			c := newTestClient(t, "")
			p, err := c.OpenPayload(testCtx(t), s.URL+"/p.gz", off)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Body.Close()
			got, err := io.ReadAll(p.Body)
			if err != nil || !bytes.Equal(got, data[off:]) {
				t.Fatalf("got %d bytes (err %v), want the %d from offset %d", len(got), err, len(data)-off, off)
			}
			if p.RangeIgnored != tt.wantIgnored || !p.Resumed {
				t.Errorf("payload %+v", p)
			}
		})
	}
}

func TestDownloadReadTimeout(t *testing.T) {
	stop := make(chan struct{})
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write(make([]byte, 100))
		http.NewResponseController(w).Flush()
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	})
	stallUntilCleanup(t, stop)
	c := newTestClient(t, "")
	c.ReadTimeout = 200 * time.Millisecond
	p, err := c.OpenPayload(testCtx(t), s.URL+"/p.gz", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Body.Close()
	start := time.Now()
	n, err := io.Copy(io.Discard, p.Body)
	if !errors.Is(err, ErrReadTimeout) || n != 100 {
		t.Fatalf("read %d bytes, err %v; want 100 and ErrReadTimeout", n, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %v", d)
	}
}

func TestDownloadBasicAuth(t *testing.T) {
	data := payloadBytes(1000)
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != "fleet" || p != "s3cret" {
			http.Error(w, "auth", http.StatusUnauthorized)
			return
		}
		serve(w, r, data)
	})
	c := newTestClient(t, "")
	if _, err := c.OpenPayload(testCtx(t), s.URL+"/p.gz", 0); !errors.Is(err, ErrHTTPStatus) {
		t.Fatalf("without auth: %v", err)
	}
	c.DownloadUser, c.DownloadPassword = "fleet", "s3cret"
	p, err := c.OpenPayload(testCtx(t), s.URL+"/p.gz", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Body.Close()
	if got, _ := io.ReadAll(p.Body); !bytes.Equal(got, data) {
		t.Error("payload differs")
	}
}

// Omaha requests never carry the download credentials.
func TestOmahaRequestHasNoDownloadAuth(t *testing.T) {
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := r.BasicAuth(); ok {
			http.Error(w, "leaked credentials", 400)
			return
		}
		io.WriteString(w, okUpdate)
	})
	c := newTestClient(t, s.URL)
	c.DownloadUser, c.DownloadPassword = "fleet", "s3cret"
	if _, err := c.Check(testCtx(t), specParams()); err != nil {
		t.Fatal(err)
	}
}

func TestDownloadFailover(t *testing.T) {
	data := payloadBytes(1000)
	bad := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 500) })
	good := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { serve(w, r, data) })
	f := &Failover{URLs: []string{bad.URL + "/p.gz", good.URL + "/p.gz"}, MaxFailuresPerURL: 1}
	c := newTestClient(t, "")
	for round := range 3 {
		p, idx, err := c.OpenPayloadFailover(testCtx(t), f, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(p.Body)
		p.Body.Close()
		if idx != 1 || !bytes.Equal(got, data) || p.URL != good.URL+"/p.gz" {
			t.Fatalf("round %d: url %d %s", round, idx, p.URL)
		}
	}
	// The first URL failed twice (> 1): the failover moved on and stopped
	// asking it.
	if n := bad.requests.Load(); n != 2 {
		t.Errorf("bad URL asked %d times, want 2", n)
	}
	if f.Current() != 1 {
		t.Errorf("current URL %d", f.Current())
	}
	if _, _, err := c.OpenPayloadFailover(testCtx(t), &Failover{}, 0); !errors.Is(err, ErrNoURL) {
		t.Errorf("no URLs: %v", err)
	}
	all := &Failover{URLs: []string{bad.URL + "/a", bad.URL + "/b"}}
	if _, idx, err := c.OpenPayloadFailover(testCtx(t), all, 0); !errors.Is(err, ErrHTTPStatus) || idx != -1 {
		t.Errorf("all failing: %d %v", idx, err)
	}
	if all.Failures[0] != 1 || all.Failures[1] != 1 {
		t.Errorf("failures %v", all.Failures)
	}
}

func TestNewFailoverFromPlan(t *testing.T) {
	plan, err := ParseResponse(golden(t, "response_update_goomaha.xml"))
	if err != nil {
		t.Fatal(err)
	}
	f := NewFailover(plan)
	if len(f.URLs) != 2 || f.MaxFailuresPerURL != 3 || !strings.HasSuffix(f.URLs[f.Current()], "/flatcar_production_update.gz") {
		t.Errorf("failover %+v", f)
	}
}
