package omaha

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Payload is an open payload download. Body yields the payload's bytes
// from Offset on; the caller must Close it.
type Payload struct {
	Body io.ReadCloser
	URL  string
	// Offset is where Body starts in the payload (the offset asked for).
	Offset int64
	// Resumed is true when Offset > 0: FUE flags errors of a resumed
	// download with bit 30.
	Resumed bool
	// RangeIgnored is true when the server answered a resume with 200 (the
	// whole file) and the first Offset bytes were skipped.
	RangeIgnored bool
	// Total is the whole payload's size when the server said (Content-Length
	// or Content-Range), else -1.
	Total int64
}

// OpenPayload GETs url from byte offset on (HTTP Range when offset > 0;
// a 206 must start at offset, a 200 is skipped up to offset). Basic auth
// is added when DownloadUser is set. A body that stalls for ReadTimeout
// (detected within twice that) fails with ErrReadTimeout. A 503 answer
// with Retry-After is retried once after that delay (at most
// MaxDownloadRetryAfter). Errors, all code 9 (DownloadTransferError) for
// the engine: *HTTPError for statuses and network failures,
// ErrRangeNotSatisfiable, ErrBadContentRange.
func (c *Client) OpenPayload(ctx context.Context, url string, offset int64) (*Payload, error) {
	return withRetryAfter(ctx, c.clock(), cmp.Or(c.MaxDownloadRetryAfter, DefaultMaxDownloadRetryAfter),
		func() (*Payload, error) { return c.openPayload(ctx, url, offset) })
}

func (c *Client) openPayload(ctx context.Context, url string, offset int64) (*Payload, error) {
	if url == "" {
		return nil, ErrNoURL
	}
	ctx, cancel := context.WithCancelCause(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel(nil)
		return nil, &HTTPError{URL: url, Err: err}
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	if c.DownloadUser != "" {
		req.SetBasicAuth(c.DownloadUser, c.DownloadPassword)
	}
	timeout := c.ReadTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	// The watchdog covers the wait for headers too.
	wd := newWatchdog(timeout, cancel)
	resp, err := c.doer().Do(req)
	if err != nil {
		wd.stop()
		cancel(nil)
		if wd.fired() {
			err = ErrReadTimeout
		}
		return nil, &HTTPError{URL: url, Err: err}
	}
	wd.kick()
	fail := func(e error) (*Payload, error) {
		wd.stop()
		resp.Body.Close()
		cancel(nil)
		return nil, e
	}
	p := &Payload{URL: url, Offset: offset, Resumed: offset > 0, Total: -1}
	switch {
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			return fail(fmt.Errorf("%w: asked for byte %d, got %q", ErrBadContentRange, offset, resp.Header.Get("Content-Range")))
		}
		p.Total = total
	case resp.StatusCode == http.StatusOK:
		p.Total = resp.ContentLength
		if offset > 0 {
			p.RangeIgnored = true
			if n, err := io.CopyN(io.Discard, &watchedReader{r: resp.Body, wd: wd}, offset); err != nil {
				return fail(&HTTPError{StatusCode: resp.StatusCode, URL: url,
					Err: fmt.Errorf("skipping to byte %d after a 200 answer, got %d: %w", offset, n, wd.cause(err))})
			}
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return fail(fmt.Errorf("%w: byte %d of %s", ErrRangeNotSatisfiable, offset, url))
	default:
		return fail(c.statusError(resp, url))
	}
	p.Body = &payloadBody{watchedReader: watchedReader{r: resp.Body, wd: wd}, c: resp.Body, cancel: cancel}
	return p, nil
}

// OpenPayloadFailover opens the payload from the URLs of f, starting at
// f's current URL and trying each URL at most once per call. Each failure
// is counted against its URL (see Failover). Returns the last error when
// every URL failed.
func (c *Client) OpenPayloadFailover(ctx context.Context, f *Failover, offset int64) (*Payload, int, error) {
	if len(f.URLs) == 0 {
		return nil, -1, ErrNoURL
	}
	var last error
	start := f.Current()
	for i := range len(f.URLs) {
		idx := (start + i) % len(f.URLs)
		p, err := c.OpenPayload(ctx, f.URLs[idx], offset)
		if err == nil {
			return p, idx, nil
		}
		if ctx.Err() != nil {
			return nil, idx, err
		}
		f.Fail(idx)
		last = err
	}
	return nil, -1, last
}

// parseContentRange parses "bytes START-END/TOTAL" (TOTAL may be "*").
func parseContentRange(s string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		t, err := strconv.ParseInt(tot, 10, 64)
		if err != nil || t <= end {
			return 0, 0, false
		}
		total = t
	}
	return start, total, true
}

// watchdog cancels a request when no progress was made for a timeout.
// Reads only bump a counter; the timer re-arms itself while the counter
// moves, so a stall is detected after between one and two timeouts.
type watchdog struct {
	timeout  time.Duration
	t        *time.Timer
	progress atomic.Int64
	seen     atomic.Int64 // progress at the last firing
	hit      atomic.Bool
}

func newWatchdog(timeout time.Duration, cancel context.CancelCauseFunc) *watchdog {
	w := &watchdog{timeout: timeout}
	w.t = time.AfterFunc(timeout, func() {
		if p := w.progress.Load(); p != w.seen.Load() {
			w.seen.Store(p)
			w.t.Reset(w.timeout)
			return
		}
		w.hit.Store(true)
		cancel(ErrReadTimeout)
	})
	return w
}

func (w *watchdog) kick()       { w.progress.Add(1) }
func (w *watchdog) stop()       { w.t.Stop() }
func (w *watchdog) fired() bool { return w.hit.Load() }

// cause replaces the transport's cancellation error by ErrReadTimeout when
// the watchdog fired.
func (w *watchdog) cause(err error) error {
	if err != nil && err != io.EOF && w.fired() {
		return fmt.Errorf("%w (%v)", ErrReadTimeout, err)
	}
	return err
}

type watchedReader struct {
	r  io.Reader
	wd *watchdog
}

func (r *watchedReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.wd.kick()
	}
	return n, r.wd.cause(err)
}

type payloadBody struct {
	watchedReader
	c      io.Closer
	cancel context.CancelCauseFunc
	once   sync.Once
}

func (b *payloadBody) Close() error {
	var err error
	b.once.Do(func() {
		b.wd.stop()
		err = b.c.Close()
		b.cancel(nil)
	})
	return err
}
