package server

import (
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/abupdate/update_engine/pkg/omaha"
)

// Fleet is what GET / shows and GET /api/fleet returns.
type Fleet struct {
	Time     time.Time     `json:"time"`
	Hosts    int           `json:"hosts"`
	Default  GroupSettings `json:"default"`  // settings of groups without their own
	Controls bool          `json:"controls"` // whether POST /fleet/… is enabled (a token is configured)
	Groups   []FleetGroup  `json:"groups"`
}

// FleetGroup is one group (GroupKey): its hosts by version, its rollout,
// and its last errors.
type FleetGroup struct {
	Name     string         `json:"name"` // GroupKey
	AppID    string         `json:"appid"`
	Track    string         `json:"track"`
	Hosts    int            `json:"hosts"`
	Versions []VersionCount `json:"versions"` // newest first
	// Latest is the newest full payload for the group ("" = none);
	// OnLatest hosts run it, InRollout hosts are in the rollout for it.
	Latest    string `json:"latest"`
	OnLatest  int    `json:"on_latest"`
	InRollout int    `json:"in_rollout"`
	Rollout   int    `json:"rollout"`
	Paused    bool   `json:"paused"`
	// OwnSettings is false when the group follows the default.
	OwnSettings bool         `json:"own_settings"`
	LastErrors  []FleetError `json:"last_errors"` // newest first, at most maxFleetErrors
}

// VersionCount is how many hosts of a group run a version.
type VersionCount struct {
	Version string `json:"version"`
	Hosts   int    `json:"hosts"`
}

// FleetError is a host's last error event.
type FleetError struct {
	MachineID string    `json:"machine_id"`
	Code      int64     `json:"code"`
	Name      string    `json:"name"` // Config.CodeName, "" without it
	Time      time.Time `json:"time"`
	Version   string    `json:"version"`
}

const maxFleetErrors = 5

// Fleet summarises the host table, the settings and the payloads.
func (h *Handler) Fleet() Fleet {
	metas, _ := h.load() // an unreadable directory only leaves Latest empty
	h.mu.Lock()
	defer h.mu.Unlock()
	f := Fleet{Time: h.cfg.Now(), Hosts: len(h.hosts), Default: h.def, Controls: h.cfg.AdminToken != "", Groups: []FleetGroup{}}
	for k, a := range h.fleetGroupsLocked(metas) {
		f.Groups = append(f.Groups, h.summariseLocked(k, a, metas))
	}
	slices.SortFunc(f.Groups, func(x, y FleetGroup) int { return strings.Compare(x.Name, y.Name) })
	return f
}

// fleetAcc gathers one group's hosts for Fleet.
type fleetAcc struct {
	g        *FleetGroup
	versions map[string]int // version → hosts
	errs     []*Host        // hosts with a last error
}

// fleetAccs is the groups of Fleet by key.
type fleetAccs map[string]*fleetAcc

// group returns the group of appID and track, adding it when new.
func (groups fleetAccs) group(appID, track string) *fleetAcc {
	k := GroupKey(appID, track)
	a := groups[k]
	if a == nil {
		a = &fleetAcc{g: &FleetGroup{Name: k, AppID: normalizeAppID(appID), Track: track,
			Versions: []VersionCount{}, LastErrors: []FleetError{}}, versions: map[string]int{}}
		groups[k] = a
	}
	return a
}

// fleetGroupsLocked lists every group a host reports from, a full payload
// names a track of, or that has settings of its own, and counts the hosts
// of each by version.
func (h *Handler) fleetGroupsLocked(metas []Metadata) fleetAccs {
	groups := fleetAccs{}
	for _, host := range h.hosts {
		a := groups.group(host.AppID, host.Track)
		a.g.Hosts++
		a.versions[host.Version]++
		if host.LastError != nil {
			a.errs = append(a.errs, host)
		}
	}
	for _, m := range metas {
		if m.Track != "" && !m.Delta {
			groups.group(appIDOrDefault(m.AppID), m.Track)
		}
	}
	for k := range h.groups {
		if _, ok := groups[k]; !ok {
			// A group key is "<app id>/<track>" or, for the default
			// app, the track (which may hold a slash itself).
			app, track, found := strings.Cut(k, "/")
			if !found || len(app) != 36 {
				app, track = "", k
			}
			groups.group(app, track)
		}
	}
	return groups
}

// summariseLocked completes group k: its settings, its latest payload and
// who runs it or is in the rollout for it, its versions newest first and
// its last errors.
func (h *Handler) summariseLocked(k string, a *fleetAcc, metas []Metadata) FleetGroup {
	g := a.g
	s, own := h.settingsLocked(k)
	g.Rollout, g.Paused, g.OwnSettings = s.Rollout, s.Paused, own
	g.Latest = latestFull(metas, g.AppID, g.Track)
	for v, n := range a.versions {
		g.Versions = append(g.Versions, VersionCount{v, n})
	}
	slices.SortFunc(g.Versions, func(x, y VersionCount) int { return CompareVersions(y.Version, x.Version) })
	if g.Latest != "" {
		g.OnLatest, g.InRollout = h.latestCountsLocked(k, g, s.Rollout)
	}
	g.LastErrors = append(g.LastErrors, h.lastErrors(a.errs)...)
	return *g
}

// latestCountsLocked counts the hosts of group k that run g.Latest (or
// newer), and those that do not but are in a rollout of percent for it.
func (h *Handler) latestCountsLocked(k string, g *FleetGroup, percent int) (current, rolling int) {
	for _, host := range h.hosts {
		if host.AppID != g.AppID || host.Track != g.Track {
			continue
		}
		if CompareVersions(host.Version, g.Latest) >= 0 {
			current++
		} else if inRollout(RolloutBucket(host.MachineID, k, g.Latest), percent) {
			rolling++
		}
	}
	return current, rolling
}

// lastErrors is the last error of each host in errs, newest first, at most
// maxFleetErrors.
func (h *Handler) lastErrors(errs []*Host) []FleetError {
	slices.SortFunc(errs, func(x, y *Host) int {
		if c := y.LastError.Time.Compare(x.LastError.Time); c != 0 {
			return c
		}
		return strings.Compare(x.MachineID, y.MachineID)
	})
	var out []FleetError
	for _, host := range errs[:min(len(errs), maxFleetErrors)] {
		e := FleetError{MachineID: host.MachineID, Code: host.LastError.Code, Time: host.LastError.Time, Version: host.LastError.Version}
		if h.cfg.CodeName != nil {
			e.Name = h.cfg.CodeName(e.Code)
		}
		out = append(out, e)
	}
	return out
}

func appIDOrDefault(id string) string {
	if id == "" {
		return normalizeAppID(omaha.DefaultAppID)
	}
	return normalizeAppID(id)
}

// latestFull is the newest full payload version for app and track.
func latestFull(metas []Metadata, appID, track string) string {
	latest := ""
	for _, m := range metas {
		if m.Delta || appIDOrDefault(m.AppID) != appIDOrDefault(appID) || (m.Track != "" && m.Track != track) {
			continue
		}
		if latest == "" || CompareVersions(m.Version, latest) > 0 {
			latest = m.Version
		}
	}
	return latest
}

//go:embed fleet.html
var fleetHTML string

var fleetPage = template.Must(template.New("fleet").Funcs(template.FuncMap{
	"ts": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
}).Parse(fleetHTML))

func (h *Handler) serveFleet(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	f := h.Fleet()
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Path == "/api/fleet" {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		enc.Encode(f)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := fleetPage.Execute(w, f); err != nil {
		h.cfg.logf("omaha/server: fleet page: %v", err)
	}
}

// serveControl handles POST /fleet/pause, /fleet/resume and /fleet/rollout
// (form fields group, percent, token; or the token as "Authorization:
// Bearer"). Without Config.AdminToken they are disabled.
func (h *Handler) serveControl(w http.ResponseWriter, r *http.Request) {
	action := strings.TrimPrefix(r.URL.Path, "/fleet/")
	if action != "pause" && action != "resume" && action != "rollout" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if h.cfg.AdminToken == "" {
		http.Error(w, "controls disabled: the server has no admin token", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
		return
	}
	token := r.PostForm.Get("token")
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		token = bearer
	}
	// Compare hashes, so that neither the content nor the length of the
	// token shows in the time taken.
	got, want := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(h.cfg.AdminToken))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		http.Error(w, "bad or missing token", http.StatusForbidden)
		return
	}
	group := r.PostForm.Get("group")
	if group != AllGroups && !h.knownGroup(group) {
		http.Error(w, "unknown group "+strconv.Quote(group)+" (\"*\" = the default of all groups)", http.StatusBadRequest)
		return
	}
	var err error
	switch action {
	case "pause", "resume":
		err = h.SetGroupPaused(group, action == "pause")
	case "rollout":
		n, perr := strconv.Atoi(r.PostForm.Get("percent"))
		if perr != nil || n < 0 || n > 100 {
			http.Error(w, "percent: want an integer 0-100", http.StatusBadRequest)
			return
		}
		err = h.SetGroupRollout(group, n)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h.cfg.logf("omaha/server: %s group %q by %s", action, group, r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (h *Handler) knownGroup(name string) bool {
	for _, g := range h.Fleet().Groups {
		if g.Name == name {
			return true
		}
	}
	return false
}
