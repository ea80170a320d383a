// Package dbusapi is the server side of the update engine's D-Bus
// surface, the objects the daemon exports. The names, the status tuple
// and the client (with its Watch, which believes only the owner of
// com.coreos.update1) are pkg/update1's, shared with the reboot manager
// and update_engine_client; this package only serves them.
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

	"github.com/abupdate/update_engine/pkg/update1"
)

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
	Status() update1.Status
	// Detail returns the snapshot of GetStatusJSON.
	Detail() update1.Detail
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
