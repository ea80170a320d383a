// Package dbusapi is the update engine's D-Bus surface: the server that the
// daemon exports and the typed client of its methods that
// update_engine_client uses. Watching StatusUpdate is pkg/rebootmgr's
// (UpdateEngine.Watch), shared by the reboot manager and the client: it
// believes only the owner of com.coreos.update1.
//
// Names (SPEC.md sections 1a and 1c). One connection exports one object per
// path; every object forwards to the same Engine:
//
//	bus name                  object path                 interface
//	com.coreos.update1        /com/coreos/update1         com.coreos.update1.Manager
//	org.chromium.UpdateEngine /org/chromium/UpdateEngine  org.chromium.UpdateEngineInterface
//	(both names)              /com/coreos/update1         io.github.abupdate.UpdateEngine1
//
// com.coreos.update1.Manager (Flatcar, never changed):
//
//	AttemptUpdate()
//	ResetStatus()
//	GetStatus() → (x last_checked_time, d progress, s current_operation,
//	               s new_version, x new_size)
//	signal StatusUpdate(x, d, s, s, x)
//
// org.chromium.UpdateEngineInterface (ChromeOS 2019 subset, never changed):
// AttemptUpdate(s app_version, s omaha_url), ResetStatus(), GetStatus() →
// xdssx and the same StatusUpdate signal from /org/chromium/UpdateEngine.
//
// io.github.abupdate.UpdateEngine1 (ours, versioned: a change that breaks a
// caller gets a new interface name, UpdateEngine2):
//
//	GetStatusJSON() → s            the Detail below as JSON
//	AttemptRollback(b powerwash)   boot the other slot next (root only)
//	CanRollback() → b
//	SetChannel(s channel)          the Omaha track/GROUP (root only)
//	GetChannel() → s
//	GetLastAttemptError() → i      the last update_engine error code
//
// Handlers hold no state: they call the Engine, which owns it. Every
// failure reaches the caller as a D-Bus error (ErrorFailed,
// ErrorAccessDenied, org.freedesktop.DBus.Error.InvalidArgs), never a
// crash of the daemon.
//
// The policy file dist/com.coreos.update1.conf lets root own the names and
// call everything, user core call the three Flatcar methods, and denies
// everyone else. Methods marked root only also check the caller's uid
// themselves, so a laxer policy does not open them.
package dbusapi

import (
	"context"
	"errors"
)

// The compatible names. Never change these.
const (
	CoreOSName      = "com.coreos.update1"
	CoreOSPath      = "/com/coreos/update1"
	CoreOSInterface = "com.coreos.update1.Manager"

	ChromeOSName      = "org.chromium.UpdateEngine"
	ChromeOSPath      = "/org/chromium/UpdateEngine"
	ChromeOSInterface = "org.chromium.UpdateEngineInterface"

	// ErrorFailed is the error name of a refused call on every interface
	// (AUE's org.chromium.UpdateEngine.Error.Failed).
	ErrorFailed = "org.chromium.UpdateEngine.Error.Failed"

	// SignalName is the member of the status signal on both compatible
	// interfaces.
	SignalName = "StatusUpdate"
)

// Our own interface, on the CoreOS object path.
const (
	Interface = "io.github.abupdate.UpdateEngine1"

	// ErrorAccessDenied is returned when a root-only method is called by
	// another user.
	ErrorAccessDenied = "io.github.abupdate.UpdateEngine1.Error.AccessDenied"
)

// Status is the five values of GetStatus and StatusUpdate (signature
// xdssx), in wire order.
type Status struct {
	LastCheckedTime  int64   `json:"last_checked_time"` // unix seconds of the last successful check, 0 before
	Progress         float64 `json:"progress"`          // download fraction 0.0–1.0
	CurrentOperation string  `json:"current_operation"` // e.g. "UPDATE_STATUS_IDLE"
	NewVersion       string  `json:"new_version"`       // "0.0.0" when none
	NewSize          int64   `json:"new_size"`          // payload size in bytes
}

// Detail is the richer status of GetStatusJSON. Fields the engine does not
// know are left zero.
type Detail struct {
	Status
	CurrentVersion   string `json:"current_version,omitempty"`
	Channel          string `json:"channel,omitempty"`
	Server           string `json:"server,omitempty"`
	BootedSlot       string `json:"booted_slot,omitempty"`
	NextBootSlot     string `json:"next_boot_slot,omitempty"`
	LastError        int32  `json:"last_error_code"`      // update_engine code with flag bits
	LastErrorName    string `json:"last_error,omitempty"` // e.g. "PayloadHashMismatchError(10)"
	LastErrorMessage string `json:"last_error_message,omitempty"`
	Resumes          int    `json:"resumes"` // resumed downloads of the current payload
	BytesDownloaded  int64  `json:"bytes_downloaded"`
	CanRollback      bool   `json:"can_rollback"`
	IOLimit          string `json:"io_limit,omitempty"`           // "fixed" or "adaptive"; "" = writes unthrottled
	IOWriteLimit     uint64 `json:"io_write_limit_bps,omitempty"` // the passive slot's write limit now, bytes/s
	IOLimitError     string `json:"io_limit_error,omitempty"`     // a configured limit that could not be applied, and what to do; writes are unthrottled
}

// UpdateRequest is an interactive update request. AppVersion and OmahaURL
// come from the ChromeOS AttemptUpdate(s,s) and may be empty; the engine
// decides whether to honour them.
type UpdateRequest struct {
	AppVersion string
	OmahaURL   string
}

// Engine is what the handlers call. Implementations must be safe for
// concurrent use: godbus runs every call on its own goroutine.
type Engine interface {
	// Status returns a snapshot; it must not block on an update in flight.
	Status() Status
	// Detail returns the snapshot of GetStatusJSON.
	Detail() Detail
	// AttemptUpdate starts an interactive check. Ignored (nil) unless
	// idle, as in Flatcar.
	AttemptUpdate(ctx context.Context, req UpdateRequest) error
	// ResetStatus returns to IDLE from IDLE or UPDATED_NEED_REBOOT and
	// fails in any other state.
	ResetStatus(ctx context.Context) error
	// AttemptRollback makes the other slot boot next.
	AttemptRollback(ctx context.Context, powerwash bool) error
	// SetChannel sets the Omaha track used by the next check.
	SetChannel(ctx context.Context, channel string) error
}

// Client errors.
var (
	// ErrNoBus means the bus itself could not be reached.
	ErrNoBus = errors.New("dbusapi: cannot connect to the D-Bus bus")
	// ErrNotRunning means nobody owns com.coreos.update1 on the bus.
	ErrNotRunning = errors.New("dbusapi: update_engine is not running (nobody owns " + CoreOSName + ")")
	// ErrFailed is a call the daemon refused (ErrorFailed); the wrapping
	// error carries the daemon's message.
	ErrFailed = errors.New("dbusapi: the daemon refused the call")
	// ErrAccessDenied is a call the bus or daemon did not allow.
	ErrAccessDenied = errors.New("dbusapi: access denied")
)
