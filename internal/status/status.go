// Package status holds the numbers and strings that leave the update engine
// process: the update status of the D-Bus API, and the error codes and flag
// bits reported in Omaha events, on D-Bus, by the client and in metrics.
//
// Every value here is fixed by compatibility with Flatcar/CoreOS
// update_engine (SPEC.md sections 1a and 7): change none of them.
//
// The update status is defined once, in pkg/update1 (the reboot manager
// and the client read it too); the names here are aliases kept so that
// the engine's many uses read as before.
package status

import "github.com/abupdate/update_engine/pkg/update1"

// Update is the engine's update status (FUE enum UpdateStatus). Its numeric
// value is the enum order; its String is the D-Bus CURRENT_OP string.
type Update = update1.Op

// The update states, in Flatcar's order.
const (
	Idle                = update1.Idle
	CheckingForUpdate   = update1.CheckingForUpdate
	UpdateAvailable     = update1.UpdateAvailable
	Downloading         = update1.Downloading
	Verifying           = update1.Verifying
	Finalizing          = update1.Finalizing
	UpdatedNeedReboot   = update1.UpdatedNeedReboot
	ReportingErrorEvent = update1.ReportingErrorEvent
)

// UnknownStatus is what Flatcar prints for a value outside the enum.
const UnknownStatus = update1.UnknownStatus

// ParseUpdate maps a status string back to its value.
func ParseUpdate(s string) (Update, bool) { return update1.ParseOp(s) }
