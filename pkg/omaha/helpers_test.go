package omaha

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is an httptest server on 127.0.0.1 that counts requests.
type countingServer struct {
	*httptest.Server
	requests atomic.Int64
}

func newCountingServer(t testing.TB, h http.HandlerFunc) *countingServer {
	t.Helper()
	s := &countingServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// trackingDoer wraps a Doer and fails the test if a response body is left
// unclosed.
type trackingDoer struct {
	d    Doer
	mu   sync.Mutex // guards open
	open int
}

func newTrackingDoer(t *testing.T, d Doer) *trackingDoer {
	td := &trackingDoer{d: d}
	t.Cleanup(func() {
		td.mu.Lock()
		defer td.mu.Unlock()
		if td.open != 0 {
			t.Errorf("%d response bodies left unclosed", td.open)
		}
	})
	return td
}

func (td *trackingDoer) Do(r *http.Request) (*http.Response, error) {
	resp, err := td.d.Do(r)
	if err != nil {
		return nil, err
	}
	td.mu.Lock()
	td.open++
	td.mu.Unlock()
	resp.Body = &trackedBody{ReadCloser: resp.Body, td: td}
	return resp, nil
}

type trackedBody struct {
	io.ReadCloser
	td   *trackingDoer
	once sync.Once
}

func (b *trackedBody) Close() error {
	b.once.Do(func() {
		b.td.mu.Lock()
		b.td.open--
		b.td.mu.Unlock()
	})
	return b.ReadCloser.Close()
}

// newTestClient returns a Client for url over a real transport, with body
// tracking and short timeouts.
func newTestClient(t *testing.T, url string) *Client {
	t.Helper()
	hc, err := NewHTTPClient(TransportOptions{ConnectTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	return &Client{Server: url, HTTP: newTrackingDoer(t, hc), RequestTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second}
}

// stallUntilCleanup registers, after the server's own cleanup (so it runs
// first), the release of handlers that stall until the client gives up.
func stallUntilCleanup(t *testing.T, stop chan struct{}) {
	t.Cleanup(func() { close(stop) })
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testCtxCancel(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	return ctx, cancel
}
