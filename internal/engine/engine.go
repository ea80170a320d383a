// Package engine is the update state machine. One goroutine (Run) owns
// the update state; D-Bus handlers and the update worker only send it
// requests and read published snapshots.
//
// The engine holds only the state machine. It consumes small interfaces
// (deps.go: Checker, Downloader, Applier, Slots, Floor, Measurer,
// Postinstaller, Prefs) over the plain values of internal/update; the
// real parts are in internal/parts and the daemon wires them in. It
// reports through one Observer (observe.go): each published snapshot and
// each measurement is a typed Observation, which the daemon fans out to
// the D-Bus signal and the metrics. Errors become update_engine codes in
// mapError (errors.go); the parts' packages' sentinels are named in
// update.PackageCode, so the engine imports none of those packages.
//
// Status flow (SPEC.md 1a): IDLE → CHECKING_FOR_UPDATE → (no update → IDLE)
// | UPDATE_AVAILABLE → DOWNLOADING → VERIFYING → FINALIZING →
// UPDATED_NEED_REBOOT; any failure → REPORTING_ERROR_EVENT → IDLE.
//
// Omaha events per attempt: 13/1 before the first payload byte, 14/1 when
// the payload is in, 3/1 after the flip, 3/0 errorcode=<code|flags> (3/9
// for codes 35, 36, 40) on failure. The next check after an update carries
// 3/2 previousversion=<old>, or 3/0 errorcode=44 when the machine came
// back on the old version (rollback).
//
// Crash safety: one durable record (record.go) is the engine's truth. It
// is written atomically before each step it names (download, verified,
// post-install, flip, flipped) and holds the payload's identity, the
// applier's checkpoint and the owed 3/1 event; a failed write stops the
// step. A restart decides from the record, the GPT attributes, the booted
// slot and the boot id alone (decideRestart, restart.go): resume the
// download with an HTTP Range request when Omaha offers the same payload
// (at most MaxResumes times), finish a verified update without
// downloading it again, stay in UPDATED_NEED_REBOOT, or report the
// outcome of the reboot. Flatcar's previous-version pref and completion
// marker are derived from the record. The slot is only flipped after the
// applier verified the payload and the engine checked the Omaha size and
// SHA-256.
//
// A Flatcar payload's kernel and PCR policy (procedures.go) are written
// to temporary files while it streams and renamed into place once it
// verified, before the verified record; post-install gets their paths.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/update1"
)

// DefaultServer is Flatcar's public Omaha URL; any other server sets
// status.FlagTestOmahaURL on reported errors.
const DefaultServer = omaha.DefaultServer

// Errors returned to D-Bus callers.
var (
	ErrBusy         = errors.New("engine: an update is in progress")
	ErrNotIdle      = errors.New("engine: not idle")
	ErrBadChannel   = errors.New("engine: invalid channel name")
	ErrNoRollback   = errors.New("engine: no bootable image on the other slot")
	ErrSizeMismatch = errors.New("engine: payload size differs from Omaha's")
	ErrHashMismatch = errors.New("engine: payload SHA-256 differs from Omaha's")
)

// Config is everything the engine needs. Checker, Downloader, Applier,
// Slots, Prefs and Postinst are required; the others may be nil (not
// used).
type Config struct {
	Checker    Checker
	Downloader Downloader
	Applier    Applier
	Slots      Slots
	Prefs      Prefs
	Floor      Floor
	// Measurer measures the new image into the TPM at the flip.
	Measurer Measurer
	// Observer hears every published snapshot and measurement.
	Observer Observer
	Postinst Postinstaller
	// Procedures places the kernel and PCR policy a Flatcar payload
	// carries (the zero value: /boot, /var/lib/update_engine, no POST).
	Procedures Procedures
	Clock      Clock      // nil = wall clock
	Rand       *rand.Rand // nil = seeded from the clock
	Log        *slog.Logger

	CurrentVersion string // running OS version
	// BootID identifies this boot (/proc/sys/kernel/random/boot_id): a
	// restart within one boot is not a reboot. "" = unknown (every start
	// counts as a new boot).
	BootID string
	Track  string // default channel (GROUP); a SetChannel pref wins
	Server string // Omaha URL; "" = DefaultServer
	// Settings, when set, is called before every check for the current
	// GROUP and SERVER (Flatcar re-reads update.conf at every check). On
	// error the previous values stay.
	Settings func() (Settings, error)

	// MarkerPath survives daemon restarts until reboot
	// (/var/run/update_engine_autoupdate_completed).
	MarkerPath string
	// RebootRequiredPath is touched after a successful update
	// (/run/reboot-required); "" = none.
	RebootRequiredPath string

	Schedule Schedule
	Health   HealthGate

	// MaxResumes caps resumed downloads of one payload (10).
	MaxResumes int
	// AllowOmahaURL lets ChromeOS AttemptUpdate(s,s) override the server
	// for that one attempt.
	AllowOmahaURL bool
}

// Settings are the values re-read before each check; empty fields keep
// the configured ones.
type Settings struct {
	Track  string
	Server string
}

// Snapshot is the published state. It is a value: readers get a copy.
type Snapshot struct {
	Status           update1.Op
	LastChecked      int64 // unix seconds of the last successful check, 0 before
	Progress         float64
	NewVersion       string // "0.0.0" when none
	NewSize          int64
	CurrentVersion   string
	Channel          string
	Server           string
	BootedSlot       string
	NextBootSlot     string
	LastError        omaha.Code // of the last attempt; Success when it succeeded
	LastErrorMessage string
	Resumes          int
	BytesDownloaded  int64
	CanRollback      bool
}

// Engine is the state machine. Create with New, then call Run once.
type Engine struct {
	cfg Config
	log *slog.Logger

	reqs    chan request      // D-Bus → owner
	mutate  chan func(*state) // worker → owner
	snap    atomic.Pointer[Snapshot]
	running atomic.Bool
	ready   chan struct{} // closed once Run has restored the persisted state

	randMu sync.Mutex // guards cfg.Rand (used by the owner and the worker)

	// recMu guards rec (the stored record) and orders the GPT writes
	// that depend on it: the flip and the health gate.
	recMu sync.Mutex
	rec   Record
}

type reqKind int

const (
	reqAttempt reqKind = iota
	reqReset
	reqRollback
	reqChannel
)

type request struct {
	kind      reqKind
	omahaURL  string
	channel   string
	powerwash bool
	reply     chan error
}

// New checks cfg and returns an engine in its initial state.
func New(cfg Config) (*Engine, error) {
	if cfg.Checker == nil || cfg.Downloader == nil || cfg.Applier == nil || cfg.Slots == nil || cfg.Prefs == nil || cfg.Postinst == nil {
		return nil, errors.New("engine: Checker, Downloader, Applier, Slots, Prefs and Postinst are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock()
	}
	if cfg.Rand == nil {
		n := uint64(cfg.Clock.Now().UnixNano())
		cfg.Rand = rand.New(rand.NewPCG(n, n>>7|1))
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Server == "" {
		cfg.Server = DefaultServer
	}
	if cfg.Track == "" {
		cfg.Track = "stable"
	}
	if cfg.MaxResumes == 0 {
		cfg.MaxResumes = 10
	}
	cfg.Schedule = cfg.Schedule.withDefaults()
	e := &Engine{
		ready:  make(chan struct{}),
		cfg:    cfg,
		log:    cfg.Log,
		reqs:   make(chan request),
		mutate: make(chan func(*state), 16),
	}
	s := Snapshot{Status: update1.Idle, NewVersion: "0.0.0", CurrentVersion: cfg.CurrentVersion, Channel: cfg.Track, Server: cfg.Server}
	e.snap.Store(&s)
	return e, nil
}

// Snapshot returns the current published state.
func (e *Engine) Snapshot() Snapshot { return *e.snap.Load() }

// Ready is closed once Run has restored what survives a restart (a pending
// reboot, a detected rollback, the slots), so a first GetStatus answers
// from that state: export the engine on D-Bus only after it.
func (e *Engine) Ready() <-chan struct{} { return e.ready }

func (e *Engine) send(ctx context.Context, r request) error {
	r.reply = make(chan error, 1)
	select {
	case e.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AttemptUpdate starts an interactive check when idle and returns once the
// status left IDLE; otherwise it is silently ignored (Flatcar). omahaURL
// is honoured only with Config.AllowOmahaURL.
func (e *Engine) AttemptUpdate(ctx context.Context, omahaURL string) error {
	return e.send(ctx, request{kind: reqAttempt, omahaURL: omahaURL})
}

// ResetStatus: IDLE → ok; UPDATED_NEED_REBOOT → IDLE (marker removed, GPT
// untouched); anything else → ErrBusy.
func (e *Engine) ResetStatus(ctx context.Context) error {
	return e.send(ctx, request{kind: reqReset})
}

// AttemptRollback makes the passive slot boot next, when it holds a
// bootable image and no update is in flight.
func (e *Engine) AttemptRollback(ctx context.Context, powerwash bool) error {
	return e.send(ctx, request{kind: reqRollback, powerwash: powerwash})
}

// SetChannel persists the Omaha track for the next checks.
func (e *Engine) SetChannel(ctx context.Context, channel string) error {
	if !validChannel(channel) {
		return fmt.Errorf("%w: %q (letters, digits, '.', '_', '-'; at most 64)", ErrBadChannel, channel)
	}
	return e.send(ctx, request{kind: reqChannel, channel: channel})
}

func validChannel(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (e *Engine) float() float64 {
	e.randMu.Lock()
	defer e.randMu.Unlock()
	return e.cfg.Rand.Float64()
}
