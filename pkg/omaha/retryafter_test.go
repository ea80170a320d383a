package omaha

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock records the waits asked of it and moves its time instead of
// sleeping.
type fakeClock struct {
	mu    sync.Mutex // guards now and slept
	now   time.Time
	slept []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After records d and moves the time at once.
func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func (c *fakeClock) waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.slept)
}

var clockStart = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// busyThen answers the first n requests 503 with the given Retry-After
// (and status), then calls ok.
func busyThen(n int64, status int, retryAfter string, ok http.HandlerFunc) func(*countingServer) http.HandlerFunc {
	return func(s *countingServer) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if s.requests.Load() <= n {
				if retryAfter != "" {
					w.Header().Set("Retry-After", retryAfter)
				}
				http.Error(w, "busy", status)
				return
			}
			ok(w, r)
		}
	}
}

// TestCheckRetryAfter: an update check answered 503 with Retry-After waits
// that long (seconds or an HTTP date; at most 1 h) on the injected clock
// and retries once; other answers, invalid values and pings do not wait.
func TestCheckRetryAfter(t *testing.T) {
	update := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, okUpdate) }
	tests := []struct {
		name      string
		handler   func(*countingServer) http.HandlerFunc
		max       time.Duration // Client.MaxCheckRetryAfter
		ping      bool
		wantWaits []time.Duration
		wantReqs  int64
		wantErr   bool
	}{
		{"seconds", busyThen(1, 503, "120", update), 0, false, []time.Duration{120 * time.Second}, 2, false},
		{"http date", busyThen(1, 503, clockStart.Add(90*time.Second).Format(http.TimeFormat), update), 0, false, []time.Duration{90 * time.Second}, 2, false},
		{"capped at 1 h, one retry", busyThen(9, 503, "7200", update), 0, false, []time.Duration{time.Hour}, 2, true},
		{"own cap", busyThen(1, 503, "600", update), 5 * time.Minute, false, []time.Duration{5 * time.Minute}, 2, false},
		{"waits off", busyThen(1, 503, "60", update), -1, false, nil, 1, true},
		{"no Retry-After", busyThen(1, 503, "", update), 0, false, nil, 1, true},
		{"invalid Retry-After", busyThen(1, 503, "soon", update), 0, false, nil, 1, true},
		{"date in the past", busyThen(1, 503, clockStart.Add(-time.Minute).Format(http.TimeFormat), update), 0, false, nil, 1, true},
		{"500 with Retry-After", busyThen(1, 500, "60", update), 0, false, nil, 1, true},
		{"ping does not wait", busyThen(1, 503, "60", update), 0, true, nil, 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s *countingServer
			s = newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { tc.handler(s)(w, r) })
			c := newTestClient(t, s.URL+"/v1/update/")
			clk := &fakeClock{now: clockStart}
			c.Clock, c.MaxCheckRetryAfter = clk, tc.max
			var err error
			if tc.ping {
				err = c.Ping(testCtx(t), specParams())
			} else {
				var plan *Plan
				plan, err = c.Check(testCtx(t), specParams())
				if err == nil && plan.Version != "2.0.0" {
					t.Fatalf("plan %+v", plan)
				}
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if got := clk.waits(); !slices.Equal(got, tc.wantWaits) {
				t.Errorf("waited %v, want %v", got, tc.wantWaits)
			}
			if n := s.requests.Load(); n != tc.wantReqs {
				t.Errorf("%d requests, want %d", n, tc.wantReqs)
			}
			var he *HTTPError
			if tc.name == "capped at 1 h, one retry" && (!errors.As(err, &he) || he.RetryAfter != 2*time.Hour || !Backoff(err)) {
				t.Errorf("err %#v: want a 503 *HTTPError with RetryAfter 2h that backs off", err)
			}
		})
	}
}

// TestCheckRetryAfterCancel: a wait on Retry-After ends with the context;
// the check then fails with the 503 without a second request.
func TestCheckRetryAfterCancel(t *testing.T) {
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3600")
		http.Error(w, "busy", 503)
	})
	c := newTestClient(t, s.URL+"/v1/update/")
	ctx, cancel := testCtxCancel(t)
	c.Clock = cancelClock{cancel}
	_, err := c.Check(ctx, specParams())
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 503 {
		t.Fatalf("err %v, want the 503", err)
	}
	if n := s.requests.Load(); n != 1 {
		t.Fatalf("%d requests after the wait was cancelled", n)
	}
}

// cancelClock cancels the context when asked to wait.
type cancelClock struct{ cancel context.CancelFunc }

func (cancelClock) Now() time.Time { return clockStart }

func (c cancelClock) After(d time.Duration) <-chan time.Time {
	c.cancel()
	return nil // never fires: the wait ends with the context
}

// TestDownloadRetryAfter: a payload GET answered 503 with Retry-After
// waits (at most 5 min) and retries once.
func TestDownloadRetryAfter(t *testing.T) {
	body := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "payload bytes") }
	for _, tc := range []struct {
		name      string
		retry     string
		busy      int64
		wantWaits []time.Duration
		wantErr   bool
	}{
		{"seconds", "30", 1, []time.Duration{30 * time.Second}, false},
		{"capped at 5 min, one retry", "3600", 9, []time.Duration{5 * time.Minute}, true},
		{"no Retry-After", "", 1, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s *countingServer
			s = newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { busyThen(tc.busy, 503, tc.retry, body)(s)(w, r) })
			c := newTestClient(t, s.URL)
			clk := &fakeClock{now: clockStart}
			c.Clock = clk
			p, err := c.OpenPayload(testCtx(t), s.URL+"/p.gz", 0)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err == nil {
				b, _ := io.ReadAll(p.Body)
				p.Body.Close()
				if string(b) != "payload bytes" {
					t.Fatalf("body %q", b)
				}
			}
			if got := clk.waits(); !slices.Equal(got, tc.wantWaits) {
				t.Errorf("waited %v, want %v", got, tc.wantWaits)
			}
		})
	}
}
