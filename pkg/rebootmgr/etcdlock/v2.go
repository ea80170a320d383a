package etcdlock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// V2Client is the same semaphore on etcd's v2 keys API, where locksmithd
// and locksmithctl keep it (etcd <= 3.5 started with --enable-v2). The v2
// and v3 stores of one etcd are separate: a fleet in which any host still
// runs locksmithd must use this client on every host, or two hosts can
// hold "the" lock at once.
//
// Protocol (the v2 HTTP API, as locksmith's lock/etcd.go drives it through
// the etcd v2 client):
//
//	GET /v2/keys/<key>                                 → node.value, node.modifiedIndex
//	PUT /v2/keys/<key>?prevExist=false  value=<json>   create a missing key (105: exists)
//	PUT /v2/keys/<key>?prevIndex=<modifiedIndex>  value=<json>
//	                                                   compare-and-swap (101: compare failed)
//
// A lost race (101, 105) is retried from a fresh read, as in Client. There
// is no multi-key transaction in v2, so holder deadlines (HolderTTL) are
// v3 only.
type V2Client struct {
	// Endpoints are etcd client URLs, tried in order until one answers.
	Endpoints []string
	// HTTP is the client (its Transport carries the TLS settings);
	// nil = http.DefaultClient.
	HTTP *http.Client
	// Username and Password, when set, are sent as basic auth (etcd v2
	// auth).
	Username, Password string
	Group              string // "" = default group
}

// v2Node and v2Response are the parts of a v2 answer used here.
type v2Response struct {
	Node struct {
		Value         string `json:"value"`
		ModifiedIndex int64  `json:"modifiedIndex"`
	} `json:"node"`
	ErrorCode int    `json:"errorCode"`
	Message   string `json:"message"`
	Cause     string `json:"cause"`
}

// v2 error codes (etcd v2 API).
const (
	v2KeyNotFound    = 100
	v2CompareFailed  = 101
	v2NodeExists     = 105
	v2MaxAnswerBytes = 1 << 20
)

// v2Error is an error answer of the v2 API.
type v2Error struct {
	Code    int
	Message string
}

func (e *v2Error) Error() string { return fmt.Sprintf("etcd v2: %s (%d)", e.Message, e.Code) }

// do sends one request to the first endpoint that answers.
func (c *V2Client) do(ctx context.Context, method string, query url.Values, body url.Values) (*v2Response, error) {
	key := Key(c.Group)
	var errs []error
	for _, ep := range c.Endpoints {
		u, err := url.Parse(strings.TrimSuffix(ep, "/"))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
			continue
		}
		u.Path += "/v2/keys/" + key
		u.RawQuery = query.Encode()
		var rd io.Reader
		if body != nil {
			rd = strings.NewReader(body.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
		if err != nil {
			return nil, err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if c.Username != "" {
			req.SetBasicAuth(c.Username, c.Password)
		}
		hc := c.HTTP
		if hc == nil {
			hc = http.DefaultClient
		}
		resp, err := hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("etcdlock: %s %s: %w", method, key, err)
			}
			errs = append(errs, err)
			continue // the next endpoint, as locksmithctl does
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, v2MaxAnswerBytes))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("etcdlock: %s %s: %w", method, key, err)
		}
		var r v2Response
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("etcdlock: %s %s: HTTP %d, not an etcd v2 answer: %.100q", method, key, resp.StatusCode, b)
		}
		if r.ErrorCode != 0 {
			return nil, &v2Error{Code: r.ErrorCode, Message: strings.TrimSpace(r.Message + " " + r.Cause)}
		}
		if resp.StatusCode/100 != 2 {
			return nil, fmt.Errorf("etcdlock: %s %s: HTTP %d", method, key, resp.StatusCode)
		}
		return &r, nil
	}
	return nil, fmt.Errorf("etcdlock: no etcd endpoint answered: %w", errors.Join(errs...))
}

func isV2(err error, code int) bool {
	var e *v2Error
	return errors.As(err, &e) && e.Code == code
}

// Get returns the value and its modifiedIndex, creating the key with
// NewSemaphore (prevExist=false) when it is missing.
func (c *V2Client) Get(ctx context.Context) (Semaphore, int64, error) {
	for {
		r, err := c.do(ctx, http.MethodGet, url.Values{"quorum": {"true"}}, nil)
		if err == nil {
			s, err := Parse([]byte(r.Node.Value))
			if err != nil {
				return Semaphore{}, 0, fmt.Errorf("%s: %w", Key(c.Group), err)
			}
			return s, r.Node.ModifiedIndex, nil
		}
		if !isV2(err, v2KeyNotFound) {
			return Semaphore{}, 0, fmt.Errorf("etcdlock: get %s: %w", Key(c.Group), err)
		}
		fresh := NewSemaphore()
		r, err = c.do(ctx, http.MethodPut, url.Values{"prevExist": {"false"}}, url.Values{"value": {string(fresh.Marshal())}})
		if err == nil {
			return fresh, r.Node.ModifiedIndex, nil
		}
		if !isV2(err, v2NodeExists) {
			return Semaphore{}, 0, fmt.Errorf("etcdlock: create %s: %w", Key(c.Group), err)
		}
		// Someone else created it; read again.
	}
}

// update reads, applies f, and writes back with prevIndex (CAS).
func (c *V2Client) update(ctx context.Context, f func(*Semaphore) (bool, error)) (Semaphore, error) {
	for {
		s, index, err := c.Get(ctx)
		if err != nil {
			return s, err
		}
		changed, err := f(&s)
		if err != nil || !changed {
			return s, err
		}
		_, err = c.do(ctx, http.MethodPut, url.Values{"prevIndex": {strconv.FormatInt(index, 10)}},
			url.Values{"value": {string(s.Marshal())}})
		if err == nil {
			return s, nil
		}
		if !isV2(err, v2CompareFailed) {
			return s, fmt.Errorf("etcdlock: write %s: %w", Key(c.Group), err)
		}
		if err := ctx.Err(); err != nil {
			return s, err
		}
	}
}

// Lock takes a slot for id (success if id already holds one); ErrFull
// when none is free.
func (c *V2Client) Lock(ctx context.Context, id string) error {
	_, err := c.update(ctx, func(s *Semaphore) (bool, error) { return s.Lock(id) })
	return err
}

// Unlock releases id's slot; ErrNotHeld when id holds none.
func (c *V2Client) Unlock(ctx context.Context, id string) error {
	_, err := c.update(ctx, func(s *Semaphore) (bool, error) { return true, s.Unlock(id) })
	return err
}

// SetMax sets the number of slots.
func (c *V2Client) SetMax(ctx context.Context, max int) (Semaphore, error) {
	return c.update(ctx, func(s *Semaphore) (bool, error) { return true, s.SetMax(max) })
}

// Holds reports whether id currently holds a slot.
func (c *V2Client) Holds(ctx context.Context, id string) (bool, error) {
	s, _, err := c.Get(ctx)
	if err != nil {
		return false, err
	}
	return s.Holds(id), nil
}

// Semaphores is what both clients offer: *Client (v3) and *V2Client.
type Semaphores interface {
	Get(ctx context.Context) (Semaphore, int64, error)
	Lock(ctx context.Context, id string) error
	Unlock(ctx context.Context, id string) error
	SetMax(ctx context.Context, max int) (Semaphore, error)
	Holds(ctx context.Context, id string) (bool, error)
}

// Waiter waits for a free slot after Lock said the semaphore was full
// (a *FullError) instead of the caller polling: *Client with a Watcher.
type Waiter interface {
	WaitFree(ctx context.Context, id string, rev int64) error
}

var (
	_ Waiter     = (*Client)(nil)
	_ Semaphores = (*Client)(nil)
	_ Semaphores = (*V2Client)(nil)
)
