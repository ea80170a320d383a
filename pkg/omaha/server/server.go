// Package server is an Omaha v3 update server for development and small
// fleets: an http.Handler that answers Flatcar/CoreOS update_engine (and
// our pkg/omaha client) from a directory of payloads and their OUT.json
// metadata, serves the payload files with Range support, and records every
// request and event.
//
// Routes:
//
//	POST /v1/update/          Omaha v3 XML (also /v1/update)
//	GET  /packages/<file>     a payload named by a metadata file (Range, HEAD)
//
// Selection, per <app> with an <updatecheck>: payloads whose app id
// matches (braces optional, case-insensitive; metadata appid "" = the
// CoreOS/Flatcar id) and whose track is "" or the request's track; the
// newest version wins; when the client's version is older it gets an update
// (a delta from its version if it sent delta_okay="true" or the server
// prefers deltas, else the full payload), otherwise noupdate. A pause
// switch and a rollout percentage (by a hash of the machine id) hold
// updates back. Flatcar's quirk of an event in the same app as the
// updatecheck is accepted: every event is acknowledged and recorded.
package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/abupdate/update_engine/pkg/omaha"
)

// Config configures a Handler.
type Config struct {
	// Dir holds the payloads and their metadata files; it is re-read on
	// every update check, so payloads can be added while serving.
	Dir string
	// BaseURL is the codebase put in responses; "" = the scheme and Host
	// of each request + "/packages/".
	BaseURL string
	// Rollout is the percentage (1-100) of machines offered an update,
	// chosen by a hash of the machine id; 0 means 100.
	Rollout int
	// Paused starts the server with updates held back (noupdate for all).
	Paused bool
	// PreferDelta offers deltas even when the client sent delta_okay="false"
	// (Flatcar always does).
	PreferDelta bool
	// PollInterval, if > 0, is sent as updatecheck PollInterval.
	PollInterval time.Duration
	// Log, if set, receives every Record as one JSON line.
	Log io.Writer
	// Now is the clock (nil = time.Now); used for daystart and records.
	Now func() time.Time
	// MaxRequestBytes bounds request bodies (0 = 1 MiB).
	MaxRequestBytes int64
	// Name is the response's server attribute (default "omaha_devserver").
	Name string
	// ErrorLog receives a line when a metadata file added to Dir while
	// serving is broken (nil = the log package's standard logger). Such
	// a file is left out and the others are still served: one half-copied
	// file must not stop every update check.
	ErrorLog *log.Logger
}

// Handler is the server. Create it with New.
type Handler struct {
	cfg Config

	mu      sync.Mutex // guards the fields below
	badDir  string     // the last broken-metadata error logged, to log each once
	paused  bool
	rollout int
	records []Record
	logErr  error
}

// New returns a Handler for cfg; it fails when cfg.Dir cannot be read or
// holds broken metadata, so that a mistake is seen before serving.
func New(cfg Config) (*Handler, error) {
	if _, err := LoadDir(cfg.Dir); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 1 << 20
	}
	if cfg.Name == "" {
		cfg.Name = "omaha_devserver"
	}
	h := &Handler{cfg: cfg, paused: cfg.Paused}
	if cfg.Rollout == 0 {
		cfg.Rollout = 100
	}
	h.SetRollout(cfg.Rollout)
	return h, nil
}

// SetPaused switches the pause: while paused every check gets noupdate.
func (h *Handler) SetPaused(p bool) {
	h.mu.Lock()
	h.paused = p
	h.mu.Unlock()
}

// SetRollout sets the rollout percentage (clamped to 0-100; 0 offers
// nothing). New maps a Config.Rollout of 0 to 100.
func (h *Handler) SetRollout(percent int) {
	h.mu.Lock()
	h.rollout = min(max(percent, 0), 100)
	h.mu.Unlock()
}

func (h *Handler) state() (paused bool, rollout int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.paused, h.rollout
}

// Records returns a copy of everything recorded so far, oldest first.
func (h *Handler) Records() []Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Record(nil), h.records...)
}

// Events returns every recorded event, oldest first.
func (h *Handler) Events() []RecordedEvent {
	var out []RecordedEvent
	for _, r := range h.Records() {
		out = append(out, r.Events...)
	}
	return out
}

// LogError returns the first error writing to Config.Log, if any.
func (h *Handler) LogError() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.logErr
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1/update/" || r.URL.Path == "/v1/update":
		h.serveOmaha(w, r)
	case strings.HasPrefix(r.URL.Path, "/packages/"):
		h.servePackage(w, r)
	default:
		http.NotFound(w, r)
	}
}

// load reads the metadata in cfg.Dir. Broken files are logged (each error
// once) and left out; only an unreadable directory is an error.
func (h *Handler) load() ([]Metadata, error) {
	metas, err := LoadDir(h.cfg.Dir)
	if err != nil && !errors.Is(err, ErrBadMetadata) {
		return nil, err
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	h.mu.Lock()
	fresh := msg != h.badDir
	h.badDir = msg
	h.mu.Unlock()
	if fresh && msg != "" {
		l := h.cfg.ErrorLog
		if l == nil {
			l = log.Default()
		}
		l.Printf("omaha/server: left out until fixed: %s", strings.ReplaceAll(msg, "\n", "; "))
	}
	return metas, nil
}

func (h *Handler) servePackage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/packages/")
	metas, err := h.load()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	known := false
	for _, m := range metas {
		known = known || m.File == name
	}
	if !known {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(filepath.Join(h.cfg.Dir, name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, name, st.ModTime(), f)
}

func (h *Handler) serveOmaha(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxRequestBytes))
	if err != nil {
		http.Error(w, "request too large or broken: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	var req omaha.Request
	if err := xml.Unmarshal(body, &req); err != nil {
		http.Error(w, "bad request XML: "+err.Error(), http.StatusBadRequest)
		return
	}
	metas, err := h.load()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	now := h.cfg.Now()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	resp := omaha.Response{
		Protocol: "3.0",
		Server:   h.cfg.Name,
		DayStart: &omaha.DayStart{ElapsedSeconds: strconv.Itoa(int(now.Sub(midnight) / time.Second))},
	}
	base := h.cfg.BaseURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host + "/packages/"
	}
	for _, app := range req.Apps {
		rec := newRecord(now, r.RemoteAddr, &req, app)
		ar := &omaha.AppResponse{ID: app.ID, Status: "ok"}
		if app.Ping != nil {
			ar.Ping = &omaha.PingResponse{Status: "ok"}
		}
		if app.UpdateCheck != nil {
			ar.UpdateCheck = h.decide(metas, app, base, &rec)
		}
		for range app.Events {
			ar.Events = append(ar.Events, &omaha.EventResponse{Status: "ok"})
		}
		if rec.Result == ResultUnknownApp {
			ar.Status = "error-unknownApplication"
		}
		resp.Apps = append(resp.Apps, ar)
		h.record(rec)
	}
	out, err := xml.Marshal(&resp)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	io.WriteString(w, xml.Header)
	w.Write(out)
}

// decide answers one updatecheck and notes the outcome in rec.
func (h *Handler) decide(metas []Metadata, app *omaha.App, base string, rec *Record) *omaha.UpdateResponse {
	uc := &omaha.UpdateResponse{Status: "noupdate"}
	if h.cfg.PollInterval > 0 {
		uc.PollInterval = strconv.Itoa(int(h.cfg.PollInterval / time.Second))
	}
	want := normalizeAppID(app.ID)
	var cands []Metadata
	appKnown := false
	for _, m := range metas {
		id := m.AppID
		if id == "" {
			id = omaha.DefaultAppID
		}
		if normalizeAppID(id) != want {
			continue
		}
		appKnown = true
		if m.Track == "" || m.Track == app.Track {
			cands = append(cands, m)
		}
	}
	if !appKnown && want != normalizeAppID(omaha.DefaultAppID) {
		rec.Result = ResultUnknownApp
		uc.Status = "error-unknownApplication"
		return uc
	}
	deltaOK := h.cfg.PreferDelta || app.DeltaOK == "true"
	var full, delta *Metadata
	for i := range cands {
		m := &cands[i]
		switch {
		case !m.Delta:
			if full == nil || CompareVersions(m.Version, full.Version) > 0 {
				full = m
			}
		case deltaOK && CompareVersions(m.SourceVersion, app.Version) == 0:
			if delta == nil || CompareVersions(m.Version, delta.Version) > 0 {
				delta = m
			}
		}
	}
	pick := full
	if delta != nil && (pick == nil || CompareVersions(delta.Version, pick.Version) >= 0) {
		pick = delta
	}
	if pick == nil || CompareVersions(pick.Version, app.Version) <= 0 {
		rec.Result = ResultNoUpdate
		return uc
	}
	paused, rollout := h.state()
	switch {
	case paused:
		rec.Result = ResultPaused
		return uc
	case !inRollout(app.MachineID, rollout):
		rec.Result = ResultHeldBack
		return uc
	}
	rec.Result, rec.Offered, rec.OfferedVersion = ResultUpdate, pick.File, pick.Version
	sum, _ := base64.StdEncoding.DecodeString(pick.SHA256) // checked by LoadDir
	action := omaha.Action{Event: "postinstall", SHA256: pick.SHA256, DisablePayloadBackoff: "true"}
	if pick.Delta {
		action.IsDeltaPayload = "true"
	}
	uc.Status = "ok"
	uc.URLs = &omaha.URLs{URLs: []omaha.URL{{CodeBase: base}}}
	uc.Manifest = &omaha.Manifest{
		Version: pick.Version,
		Packages: &omaha.Packages{Packages: []omaha.Package{{
			Name: pick.File, SHA1: pick.SHA1, SHA256: hex.EncodeToString(sum),
			Size: strconv.FormatInt(pick.Size, 10), Required: "true",
		}}},
		Actions: &omaha.Actions{Actions: []omaha.Action{action}},
	}
	return uc
}

// inRollout reports whether machineID falls in the first percent of the
// 100 buckets of its SHA-256.
func inRollout(machineID string, percent int) bool {
	if percent >= 100 {
		return true
	}
	if percent <= 0 {
		return false
	}
	return RolloutBucket(machineID) < percent
}

// RolloutBucket is machineID's bucket in [0, 100): the first 8 bytes of
// SHA-256(machine id), big-endian, mod 100. A rollout of N percent offers
// updates to buckets below N.
func RolloutBucket(machineID string) int {
	s := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(machineID))))
	return int(binary.BigEndian.Uint64(s[:8]) % 100)
}

func (h *Handler) record(rec Record) {
	var line []byte
	if h.cfg.Log != nil {
		line, _ = json.Marshal(rec)
		line = append(line, '\n')
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, rec)
	if line != nil {
		if _, err := h.cfg.Log.Write(line); err != nil && h.logErr == nil {
			h.logErr = fmt.Errorf("omaha/server: writing the log: %w", err)
		}
	}
}
