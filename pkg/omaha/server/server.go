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
//	GET  /                    the fleet page (fleet.go)
//	GET  /api/fleet           the same as JSON
//	POST /fleet/pause, /fleet/resume, /fleet/rollout   controls, with Config.AdminToken
//
// Selection, per <app> with an <updatecheck>: payloads whose app id
// matches (braces optional, case-insensitive; metadata appid "" = the
// CoreOS/Flatcar id) and whose track is "" or the request's track; the
// newest version wins; when the client's version is older it gets an update
// (a delta from its version if it sent delta_okay="true" or the server
// prefers deltas, else the full payload), otherwise noupdate. A pause
// switch and a rollout percentage hold updates back, both per group (app
// id and track) with a default for groups without their own: a machine is
// in a rollout of N percent when RolloutBucket(machine id, group, offered
// version) < N, so raising N only adds machines. With Config.State the
// settings and the host table survive a restart (a bbolt file). Flatcar's
// quirk of an event in the same app as the updatecheck is accepted: every
// event is acknowledged and recorded.
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
	"slices"
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
	// chosen by RolloutBucket; 0 means 100, below 0 none. It is the
	// default of every group; with State, only when the state file holds
	// no default yet.
	Rollout int
	// Paused starts the server with updates held back (noupdate for all);
	// with State, only when the state file holds no default yet.
	Paused bool
	// State, if set, is the bbolt file that keeps the rollout and pause
	// settings and the host table across restarts ("" = memory only).
	State string
	// AdminToken enables the fleet page's controls (POST /fleet/…) for
	// requests carrying it; "" disables them (403).
	AdminToken string
	// CodeName names an event's error code on the fleet page (nil = no
	// names); cmd/omaha_devserver passes update_engine's code names.
	CodeName func(code int64) string
	// MaxRecords bounds the records kept in memory for Records and Events,
	// the oldest dropped first (0 = 10000); Log gets every one.
	MaxRecords int
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
	// serving is broken, one for every use of the fleet controls and one
	// when the fleet page fails to render (nil = the log package's
	// standard logger). Such a file is left out
	// and the others are still served: one half-copied file must not stop
	// every update check.
	ErrorLog *log.Logger
}

func (c *Config) logf(format string, args ...any) {
	l := c.ErrorLog
	if l == nil {
		l = log.Default()
	}
	l.Printf(format, args...)
}

// Handler is the server. Create it with New.
type Handler struct {
	cfg Config

	st *store // nil without Config.State

	mu       sync.Mutex // guards the fields below
	badDir   string     // the last broken-metadata error logged, to log each once
	def      GroupSettings
	groups   map[string]GroupSettings // group key → its own settings
	hosts    map[string]*Host         // hostKey → row
	records  []Record
	logErr   error
	storeErr error // the first error writing the host table
}

// AllGroups is the group name that addresses the default settings (every
// group without settings of its own) in SetGroup… and the controls.
const AllGroups = "*"

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
	if cfg.MaxRecords <= 0 {
		cfg.MaxRecords = 10000
	}
	if cfg.Rollout == 0 {
		cfg.Rollout = 100
	}
	h := &Handler{cfg: cfg, groups: map[string]GroupSettings{}, hosts: map[string]*Host{},
		def: GroupSettings{Rollout: min(max(cfg.Rollout, 0), 100), Paused: cfg.Paused}}
	if cfg.State != "" {
		st, settings, hosts, err := openStore(cfg.State)
		if err != nil {
			return nil, err
		}
		h.st, h.hosts = st, hosts
		for k, v := range settings {
			if k == AllGroups {
				h.def = v
			} else {
				h.groups[k] = v
			}
		}
		if _, ok := settings[AllGroups]; !ok {
			if err := st.putSettings(AllGroups, h.def); err != nil {
				st.close()
				return nil, fmt.Errorf("omaha/server: state %s: %w", cfg.State, err)
			}
		}
	}
	return h, nil
}

// Close closes the state file, if any. The Handler must not serve after.
func (h *Handler) Close() error {
	if h.st == nil {
		return nil
	}
	return h.st.close()
}

// SetPaused switches the default pause: while paused every check of a
// group without settings of its own gets noupdate.
func (h *Handler) SetPaused(p bool) error {
	return h.SetGroupPaused(AllGroups, p)
}

// SetRollout sets the default rollout percentage (0 offers nothing).
func (h *Handler) SetRollout(percent int) error {
	return h.SetGroupRollout(AllGroups, percent)
}

// SetGroupPaused pauses or resumes group (a group key, see GroupKey, or
// AllGroups). The change is written to the state file first; when that
// fails nothing changes.
func (h *Handler) SetGroupPaused(group string, p bool) error {
	return h.setGroup(group, func(s *GroupSettings) { s.Paused = p })
}

// SetGroupRollout sets group's rollout percentage, 0-100.
func (h *Handler) SetGroupRollout(group string, percent int) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("omaha/server: rollout %d%%: want 0-100", percent)
	}
	return h.setGroup(group, func(s *GroupSettings) { s.Rollout = percent })
}

func (h *Handler) setGroup(group string, change func(*GroupSettings)) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, own := h.groups[group]
	if group == AllGroups {
		s = h.def
	} else if !own {
		s = h.def // a group's own settings start from the default
	}
	change(&s)
	if h.st != nil {
		if err := h.st.putSettings(group, s); err != nil {
			return fmt.Errorf("omaha/server: saving the settings of group %q: %w", group, err)
		}
	}
	if group == AllGroups {
		h.def = s
	} else {
		h.groups[group] = s
	}
	return nil
}

// settings returns group's effective settings: its own, or the default;
// the default pause holds every group back.
func (h *Handler) settings(group string) (s GroupSettings, own bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.settingsLocked(group)
}

func (h *Handler) settingsLocked(group string) (GroupSettings, bool) {
	s, own := h.groups[group]
	if !own {
		return h.def, false
	}
	s.Paused = s.Paused || h.def.Paused
	return s, true
}

// GroupKey names the group of an app id and track: the track for the
// CoreOS/Flatcar app id, else "<app id>/<track>" (app id without braces,
// lowercase).
func GroupKey(appID, track string) string {
	id := normalizeAppID(appID)
	if id == "" || id == normalizeAppID(omaha.DefaultAppID) {
		return track
	}
	return id + "/" + track
}

// Records returns a copy of the last Config.MaxRecords records, oldest
// first.
func (h *Handler) Records() []Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.records[len(h.records)-min(len(h.records), h.cfg.MaxRecords):])
}

// Events returns every recorded event, oldest first.
func (h *Handler) Events() []RecordedEvent {
	var out []RecordedEvent
	for _, r := range h.Records() {
		out = append(out, r.Events...)
	}
	return out
}

// LogError returns the first error writing to Config.Log or to the host
// table in Config.State, if any.
func (h *Handler) LogError() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return errors.Join(h.logErr, h.storeErr)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1/update/" || r.URL.Path == "/v1/update":
		h.serveOmaha(w, r)
	case strings.HasPrefix(r.URL.Path, "/packages/"):
		h.servePackage(w, r)
	case r.URL.Path == "/" || r.URL.Path == "/api/fleet":
		h.serveFleet(w, r)
	case strings.HasPrefix(r.URL.Path, "/fleet/"):
		h.serveControl(w, r)
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
		h.cfg.logf("omaha/server: left out until fixed: %s", strings.ReplaceAll(msg, "\n", "; "))
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
	var recs []Record
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
		recs = append(recs, rec)
	}
	if err := h.record(recs); err != nil {
		// The host table could not be saved: say so rather than let the
		// client act on an answer the server will not remember.
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
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
		if appIDOrDefault(m.AppID) != want {
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
	group := GroupKey(app.ID, app.Track)
	gs, _ := h.settings(group)
	switch {
	case gs.Paused:
		rec.Result = ResultPaused
		return uc
	case !inRollout(RolloutBucket(app.MachineID, group, pick.Version), gs.Rollout):
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

// inRollout reports whether a machine in bucket (RolloutBucket) is in a
// rollout of percent.
func inRollout(bucket, percent int) bool {
	return percent >= 100 || bucket < percent
}

// RolloutBucket is a machine's bucket in [0, 100) for a group's version:
// the first 8 bytes of SHA-256(machine id, lowercase, NUL, group key, NUL,
// version), big-endian, mod 100. A rollout of N percent offers the version
// to buckets below N: the same machines on every check and after a
// restart, more (never others) as N grows, and a different first N
// percent for each group and version.
func RolloutBucket(machineID, group, version string) int {
	s := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(machineID)) + "\x00" + group + "\x00" + version))
	return int(binary.BigEndian.Uint64(s[:8]) % 100)
}

// record keeps recs (the <app>s of one request), writes them to the log,
// and updates the host table, in memory and then in the state file.
func (h *Handler) record(recs []Record) error {
	var lines []byte
	if h.cfg.Log != nil {
		for _, rec := range recs {
			line, _ := json.Marshal(rec)
			lines = append(append(lines, line...), '\n')
		}
	}
	var rows map[string][]byte
	h.mu.Lock()
	// Up to twice MaxRecords are held, then the oldest dropped at once:
	// a copy per MaxRecords requests, not one per request.
	if len(h.records)+len(recs) > 2*h.cfg.MaxRecords {
		h.records = slices.Clone(h.records[len(h.records)-min(len(h.records), h.cfg.MaxRecords):])
	}
	h.records = append(h.records, recs...)
	if lines != nil {
		if _, err := h.cfg.Log.Write(lines); err != nil && h.logErr == nil {
			h.logErr = fmt.Errorf("omaha/server: writing the log: %w", err)
		}
	}
	for _, rec := range recs {
		k, host := h.noteHostLocked(rec)
		if host != nil && h.st != nil {
			if rows == nil {
				rows = map[string][]byte{}
			}
			rows[k], _ = json.Marshal(host)
		}
	}
	h.mu.Unlock()
	if rows == nil {
		return nil
	}
	if err := h.st.putHosts(rows); err != nil {
		err = fmt.Errorf("omaha/server: saving the host table: %w", err)
		h.mu.Lock()
		if h.storeErr == nil {
			h.storeErr = err
		}
		h.mu.Unlock()
		return err
	}
	return nil
}

// noteHostLocked updates the host row rec speaks of; it returns the row
// and its key, or nil for a record without a machine id.
func (h *Handler) noteHostLocked(rec Record) (string, *Host) {
	if rec.MachineID == "" {
		return "", nil
	}
	k := hostKey(rec.AppID, rec.MachineID)
	host := h.hosts[k]
	if host == nil {
		host = &Host{MachineID: rec.MachineID}
		h.hosts[k] = host
	}
	host.AppID, host.Track, host.Version, host.LastSeen = normalizeAppID(rec.AppID), rec.Track, rec.Version, rec.Time
	if rec.MachineAlias != "" {
		host.Alias = rec.MachineAlias
	}
	if rec.UpdateCheck {
		host.LastResult, host.Offered = rec.Result, rec.OfferedVersion
	}
	for _, e := range rec.Events {
		host.LastEvent = e.String()
		if e.Result == omaha.EventResultError && e.ErrorCode != nil {
			host.LastError = &HostError{Code: *e.ErrorCode, Time: rec.Time, Version: rec.Version}
		}
	}
	return k, host
}
