// Package update1 is the vocabulary of update_engine's public D-Bus API,
// com.coreos.update1 (SPEC.md sections 1a and 1c): the bus names, object
// paths, interfaces, members and error names; the CURRENT_OP status
// strings and their enum; the status tuple and its parser; and a small
// typed client (Client) of the daemon's methods and of its StatusUpdate
// signal, used by update_engine_client and the reboot manager.
//
// Why the cut is here: the daemon (internal/dbusapi serves these names)
// and the reboot manager (pkg/rebootmgr, which may not import internal/)
// both speak this API, so its one definition lives in a pkg/ leaf that
// either side can import. The server stays in internal/dbusapi: nothing
// outside the daemon exports the interface.
//
// Every name and string here is fixed by compatibility with Flatcar's
// update_engine, locksmithd and update_engine_client: change none of them.
// internal/deptest fails if one of them is defined a second time.
//
// The package imports only the standard library and godbus.
package update1

// The Flatcar names (com.coreos.update1.Manager, never changed).
const (
	Name      = "com.coreos.update1"
	Path      = "/com/coreos/update1"
	Interface = "com.coreos.update1.Manager"

	// SignalStatusUpdate is the status signal's member on both
	// compatible interfaces; its body is the Status tuple (xdssx).
	SignalStatusUpdate = "StatusUpdate"

	MethodGetStatus     = "GetStatus"
	MethodAttemptUpdate = "AttemptUpdate"
	MethodResetStatus   = "ResetStatus"
)

// The ChromeOS names (the 2019 subset the same daemon serves).
const (
	ChromeOSName      = "org.chromium.UpdateEngine"
	ChromeOSPath      = "/org/chromium/UpdateEngine"
	ChromeOSInterface = "org.chromium.UpdateEngineInterface"

	// ErrorFailed is the error name of a refused call on every interface
	// (AUE's org.chromium.UpdateEngine.Error.Failed).
	ErrorFailed = "org.chromium.UpdateEngine.Error.Failed"
)

// Our own interface, on Path, versioned: a change that breaks a caller
// gets a new interface name (UpdateEngine2).
const (
	OwnInterface = "io.github.abupdate.UpdateEngine1"

	// ErrorAccessDenied is returned when a root-only method is called by
	// another user.
	ErrorAccessDenied = "io.github.abupdate.UpdateEngine1.Error.AccessDenied"
)
