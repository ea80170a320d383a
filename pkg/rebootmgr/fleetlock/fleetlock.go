// Package fleetlock is a client of the FleetLock protocol (Zincati,
// airlock): a counting semaphore over HTTP.
//
//	POST <base>/v1/pre-reboot    take (recursively) a reboot slot
//	POST <base>/v1/steady-state  release the slot if held
//
// Each request carries the header `fleet-lock-protocol: true` and the body
//
//	{"client_params":{"id":"<machine-id>","group":"<group>"}}
//
// 200 means success; any other status is a failure, whose body should be
// {"kind":"…","value":"…"} (e.g. kind "failed_lock_semaphore_full").
package fleetlock

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Protocol paths and header.
const (
	PreRebootPath   = "/v1/pre-reboot"
	SteadyStatePath = "/v1/steady-state"
	Header          = "fleet-lock-protocol"
	DefaultGroup    = "default"
)

// ErrRefused: the server answered with a non-200 status. Maps to
// update_engine code 1 (kActionCodeError) if ever reported.
var ErrRefused = errors.New("fleetlock: request refused")

// Request is the POST body.
type Request struct {
	ClientParams ClientParams `json:"client_params"`
}

// ClientParams identifies the client.
type ClientParams struct {
	ID    string `json:"id"`
	Group string `json:"group"`
}

// Error is the server's error body.
type Error struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
}

// Doer sends HTTP requests (*http.Client satisfies it).
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Client talks to one FleetLock server for one host.
type Client struct {
	BaseURL string
	ID      string
	Group   string // "" = DefaultGroup
	HTTP    Doer   // nil = http.DefaultClient
}

// Lock takes a reboot slot (POST /v1/pre-reboot).
func (c *Client) Lock(ctx context.Context) error { return c.post(ctx, PreRebootPath) }

// Unlock releases a slot held by this client (POST /v1/steady-state).
func (c *Client) Unlock(ctx context.Context) error { return c.post(ctx, SteadyStatePath) }

func (c *Client) post(ctx context.Context, path string) error {
	group := c.Group
	if group == "" {
		group = DefaultGroup
	}
	body, _ := json.Marshal(Request{ClientParams{ID: c.ID, Group: group}})
	url := strings.TrimRight(c.BaseURL, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("fleetlock: %w", err)
	}
	req.Header.Set(Header, "true")
	req.Header.Set("Content-Type", "application/json")
	doer := c.HTTP
	if doer == nil {
		doer = http.DefaultClient
	}
	resp, err := doer.Do(req)
	if err != nil {
		return fmt.Errorf("fleetlock: POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var e Error
	if json.Unmarshal(msg, &e) == nil && e.Kind != "" {
		return fmt.Errorf("%w: POST %s: %s: %s: %s", ErrRefused, url, resp.Status, e.Kind, e.Value)
	}
	return fmt.Errorf("%w: POST %s: %s", ErrRefused, url, resp.Status)
}
