package omaha

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/abupdate/update_engine/pkg/clock"
)

// Retry-After bounds: how long one call waits on a 503 answer's
// Retry-After before its single retry. Longer requests are cut to these;
// the scheduler's backoff takes over if the retry fails too.
const (
	DefaultMaxCheckRetryAfter    = time.Hour
	DefaultMaxDownloadRetryAfter = 5 * time.Minute
)

// Clock is the time the client waits on (Retry-After); tests inject one.
type Clock = clock.Clock

func (c *Client) clock() Clock {
	if c.Clock != nil {
		return c.Clock
	}
	return clock.Real{}
}

// parseRetryAfter reads a Retry-After value (RFC 9110 10.2.3): delay
// seconds or an HTTP date, relative to now; a date in the past is 0.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(min(n, int64(1<<62)/int64(time.Second))) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// retryAfter is the Retry-After of a 503 answer carried by err, if any.
func retryAfter(err error) (time.Duration, bool) {
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable || he.RetryAfter <= 0 {
		return 0, false
	}
	return he.RetryAfter, true
}

// withRetryAfter runs do; when it fails with a 503 that carries
// Retry-After, it waits that long (at most limit; limit < 0 = no wait,
// no retry) and runs do once more.
func withRetryAfter[T any](ctx context.Context, c Clock, limit time.Duration, do func() (T, error)) (T, error) {
	v, err := do()
	d, ok := retryAfter(err)
	if !ok || limit < 0 {
		return v, err
	}
	if serr := clock.Sleep(ctx, c, min(d, limit)); serr != nil {
		return v, err
	}
	return do()
}

// statusError is the *HTTPError of a non-2xx answer, with its Retry-After.
func (c *Client) statusError(resp *http.Response, url string) *HTTPError {
	e := &HTTPError{StatusCode: resp.StatusCode, URL: url, Err: ErrHTTPStatus}
	e.RetryAfter, _ = parseRetryAfter(resp.Header.Get("Retry-After"), c.clock().Now())
	return e
}
