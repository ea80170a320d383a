package parts

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/abupdate/update_engine/internal/prefs"
	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/internal/update"
	"github.com/abupdate/update_engine/pkg/omaha"
)

// OmahaChecker adapts *omaha.Client to the engine's Checker. While the
// server is update.ServerDisabled it makes no request and returns
// update.ErrUpdatesDisabled.
//
// Every request of an attempt carries the same app attributes, as
// Flatcar's do (its OmahaRequestParams are set once per attempt): the
// events 13/1, 14/1, 3/1 and 3/0 repeat the track, installsource and
// delta_okay of the update check before them, so that Nebraska files them
// under the machine's group. Events sent before any check of this process
// (the 3/1 owed across a restart) take the track from Track.
type OmahaChecker struct {
	Client *omaha.Client // Server = the configured Omaha URL
	Params omaha.Params  // the static request values (version, ids, board…)
	// Prefs, when set, keeps the body of every update check's answer
	// (update or not; pings and events are not kept) as the full-response
	// pref, as FUE does (omaha_request_action.cc): flatcar-postinst reads
	// it to fetch the OEM and system extensions the response names. A
	// failed write is logged, as in FUE.
	Prefs interface {
		Set(key string, value []byte) error
	}
	Log *slog.Logger // nil = discard
	// Track, when set, gives the current track for events sent before
	// any check (nil = Params.Track).
	Track func() string

	mu   sync.Mutex    // guards last
	last *omaha.Params // the attributes of the latest check, for its events
}

func (c *OmahaChecker) client(server string) (*omaha.Client, error) {
	if server == "" {
		server = c.Client.Server
	}
	if server == update.ServerDisabled {
		return nil, update.ErrUpdatesDisabled
	}
	if server == c.Client.Server {
		return c.Client, nil
	}
	return &omaha.Client{
		Server: server, HTTP: c.Client.HTTP, MaxResponseBytes: c.Client.MaxResponseBytes,
		RequestTimeout: c.Client.RequestTimeout, ReadTimeout: c.Client.ReadTimeout,
		DownloadUser: c.Client.DownloadUser, DownloadPassword: c.Client.DownloadPassword,
		MaxCheckRetryAfter: c.Client.MaxCheckRetryAfter, MaxDownloadRetryAfter: c.Client.MaxDownloadRetryAfter,
		Clock: c.Client.Clock,
	}, nil
}

// Check sends an update check (or a ping) and returns the offered plan,
// or nil when there is no update or for a ping.
func (c *OmahaChecker) Check(ctx context.Context, req update.CheckRequest) (*update.Plan, error) {
	p := c.Params
	p.Track = req.Track
	p.Interactive = req.InstallSource == "ondemandupdate"
	p.PreviousVersion = req.PreviousVersion
	p.DeltaOK = req.DeltaOK
	cl, err := c.client(req.Server)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if req.PingOnly {
		// The engine does not say delta_okay for a ping (a reboot is
		// pending): the last check's, or the configured one.
		p.DeltaOK = c.Params.DeltaOK
		if c.last != nil {
			p.DeltaOK = c.last.DeltaOK
		}
	} else {
		last := p
		last.PreviousVersion = ""
		c.last = &last
	}
	c.mu.Unlock()
	if req.PingOnly {
		return nil, cl.Ping(ctx, p)
	}
	op, err := cl.Check(ctx, p)
	if err != nil {
		return nil, err
	}
	if c.Prefs != nil {
		if err := c.Prefs.Set(prefs.KeyFullResponse, op.Raw); err != nil && c.Log != nil {
			c.Log.Warn("cannot store the update check's response", "pref", prefs.KeyFullResponse, "err", err)
		}
	}
	if op.NoUpdate {
		// The schedule still follows the answer's PollInterval.
		return &update.Plan{NoUpdate: true, PollInterval: op.PollInterval}, nil
	}
	sum, err := decodeSHA256(op.SHA256)
	if err != nil {
		return nil, status.WithCode(omaha.OmahaResponseInvalid, err)
	}
	return &update.Plan{
		Version: op.Version, URLs: op.URLs, Size: op.Size, SHA256: sum,
		Delta: op.IsDeltaPayload, PollInterval: op.PollInterval,
	}, nil
}

// decodeSHA256 accepts base64 (Flatcar) and hex (some servers).
func decodeSHA256(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	return nil, fmt.Errorf("engine: postinstall sha256 %q is neither base64 nor hex SHA-256", s)
}

// SendEvent reports one event; server "" means the configured one.
func (c *OmahaChecker) SendEvent(ctx context.Context, server string, ev omaha.Event) error {
	cl, err := c.client(server)
	if err != nil {
		return err
	}
	c.mu.Lock()
	p := c.Params
	if c.last != nil {
		p = *c.last
	} else if c.Track != nil {
		p.Track = c.Track()
	}
	c.mu.Unlock()
	return cl.SendEvent(ctx, p, ev)
}

// OmahaDownloader adapts *omaha.Client to the engine's Downloader, with
// URL failover kept per payload across attempts.
type OmahaDownloader struct {
	Client *omaha.Client

	mu       sync.Mutex // guards failover and sha
	failover *omaha.Failover
	sha      string
}

// Open opens the payload body at offset (an HTTP Range request when
// offset > 0), failing over between plan.URLs.
func (d *OmahaDownloader) Open(ctx context.Context, plan *update.Plan, offset int64) (io.ReadCloser, error) {
	d.mu.Lock()
	key := string(plan.SHA256)
	if d.failover == nil || d.sha != key {
		d.failover = &omaha.Failover{URLs: append([]string(nil), plan.URLs...)}
		d.sha = key
	}
	f := d.failover
	d.mu.Unlock()
	p, _, err := d.Client.OpenPayloadFailover(ctx, f, offset)
	if err != nil {
		return nil, err
	}
	return p.Body, nil
}
