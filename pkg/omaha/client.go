package omaha

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// DefaultServer is Flatcar's public Omaha endpoint (SERVER default).
const DefaultServer = "https://public.update.flatcar-linux.net/v1/update/"

// DefaultMaxResponseBytes bounds an Omaha response body.
const DefaultMaxResponseBytes = 1 << 20

// Client talks to one Omaha server. The zero value is not usable: set
// Server. Fields must not change while calls are in flight; a Client is
// safe for concurrent use.
type Client struct {
	// Server is the Omaha URL (update.conf SERVER).
	Server string
	// HTTP sends requests; nil = a client from NewHTTPClient(TransportOptions{}).
	HTTP Doer
	// MaxResponseBytes bounds an Omaha response (0 = DefaultMaxResponseBytes).
	MaxResponseBytes int64
	// RequestTimeout bounds one Omaha request, body included (0 = 2 min).
	RequestTimeout time.Duration
	// ReadTimeout bounds each wait for payload bytes (0 = 2 min): a stalled
	// download fails with ErrReadTimeout (within twice this) instead of
	// hanging.
	ReadTimeout time.Duration
	// DownloadUser and DownloadPassword, if User is set, are sent as HTTP
	// basic auth on payload downloads only (DOWNLOAD_USER/DOWNLOAD_PASSWORD).
	DownloadUser, DownloadPassword string
	// MaxCheckRetryAfter and MaxDownloadRetryAfter bound the wait on a
	// 503 answer's Retry-After before one retry of an update check or a
	// payload download (0 = DefaultMaxCheckRetryAfter (1 h) and
	// DefaultMaxDownloadRetryAfter (5 min); < 0 = no wait, no retry).
	// Pings and events never wait.
	MaxCheckRetryAfter, MaxDownloadRetryAfter time.Duration
	// Clock times those waits and reads Retry-After dates; nil = the
	// system clock.
	Clock Clock

	once  sync.Once
	defDo Doer // set once by doer() when HTTP is nil
}

func (c *Client) doer() Doer {
	if c.HTTP != nil {
		return c.HTTP
	}
	c.once.Do(func() {
		hc, _ := NewHTTPClient(TransportOptions{}) // cannot fail without files
		c.defDo = hc
	})
	return c.defDo
}

// Check sends an update check (ping, updatecheck and the previous-version
// or rollback event) and parses the answer. A "noupdate" answer is a Plan
// with NoUpdate set and a nil error. A 503 answer with Retry-After is
// retried once after that delay (at most MaxCheckRetryAfter). Errors:
// *HTTPError (2000+status), ErrEmptyResponse (30), ErrXMLParse (31),
// ErrInvalidResponse (34).
func (c *Client) Check(ctx context.Context, p Params) (*Plan, error) {
	req := CheckRequest(p)
	body, err := withRetryAfter(ctx, c.clock(), cmp.Or(c.MaxCheckRetryAfter, DefaultMaxCheckRetryAfter),
		func() ([]byte, error) { return c.post(ctx, req) })
	if err != nil {
		return nil, err
	}
	return ParseResponse(body)
}

// Ping sends a ping-only request (scheduled checks while an update waits
// for reboot). Like FUE, it only requires a well-formed answer: errors are
// *HTTPError, ErrEmptyResponse and ErrXMLParse.
func (c *Client) Ping(ctx context.Context, p Params) error {
	body, err := c.post(ctx, PingRequest(p))
	if err != nil {
		return err
	}
	return wellFormed(body)
}

// SendEvent reports one event. FUE treats events as best effort (it never
// fails an update because an event was lost); the error is returned for
// logging: *HTTPError, ErrEmptyResponse, ErrXMLParse.
func (c *Client) SendEvent(ctx context.Context, p Params, ev Event) error {
	body, err := c.post(ctx, EventRequest(p, ev))
	if err != nil {
		return err
	}
	return wellFormed(body)
}

func wellFormed(body []byte) error {
	if len(body) == 0 {
		return ErrEmptyResponse
	}
	_, err := parseTree(body)
	return err
}

// Post sends a raw request document to the server and returns the body of
// a 2xx answer, at most MaxResponseBytes. Errors are *HTTPError.
func (c *Client) Post(ctx context.Context, request []byte) ([]byte, error) {
	return c.post(ctx, request)
}

func (c *Client) post(ctx context.Context, request []byte) ([]byte, error) {
	if c.Server == "" {
		return nil, &HTTPError{Err: errors.New("no server URL")}
	}
	timeout := c.RequestTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Server, bytes.NewReader(request))
	if err != nil {
		return nil, &HTTPError{URL: c.Server, Err: err}
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := c.doer().Do(req)
	if err != nil {
		return nil, &HTTPError{URL: c.Server, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Drain a little so the connection can be reused.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, c.statusError(resp, c.Server)
	}
	max := c.MaxResponseBytes
	if max <= 0 {
		max = DefaultMaxResponseBytes
	}
	if resp.ContentLength > max {
		return nil, &HTTPError{StatusCode: resp.StatusCode, URL: c.Server,
			Err: fmt.Errorf("%w: Content-Length %d > %d", ErrResponseTooLarge, resp.ContentLength, max)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, &HTTPError{StatusCode: resp.StatusCode, URL: c.Server, Err: err}
	}
	if int64(len(body)) > max {
		return nil, &HTTPError{StatusCode: resp.StatusCode, URL: c.Server,
			Err: fmt.Errorf("%w: more than %d bytes", ErrResponseTooLarge, max)}
	}
	return body, nil
}
