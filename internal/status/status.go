// Package status holds the numbers and strings that leave the update engine
// process: the update status of the D-Bus API, and the error codes and flag
// bits reported in Omaha events, on D-Bus, by the client and in metrics.
//
// Every value here is fixed by compatibility with Flatcar/CoreOS
// update_engine (SPEC.md sections 1a and 7): change none of them.
//
// The package is a leaf: it imports only the standard library.
package status

// Update is the engine's update status (FUE enum UpdateStatus). Its numeric
// value is the enum order; its String is the D-Bus CURRENT_OP string.
type Update int

// The update states, in Flatcar's order.
const (
	Idle                Update = iota // UPDATE_STATUS_IDLE
	CheckingForUpdate                 // UPDATE_STATUS_CHECKING_FOR_UPDATE
	UpdateAvailable                   // UPDATE_STATUS_UPDATE_AVAILABLE
	Downloading                       // UPDATE_STATUS_DOWNLOADING
	Verifying                         // UPDATE_STATUS_VERIFYING
	Finalizing                        // UPDATE_STATUS_FINALIZING
	UpdatedNeedReboot                 // UPDATE_STATUS_UPDATED_NEED_REBOOT
	ReportingErrorEvent               // UPDATE_STATUS_REPORTING_ERROR_EVENT
)

var updateNames = [...]string{
	Idle:                "UPDATE_STATUS_IDLE",
	CheckingForUpdate:   "UPDATE_STATUS_CHECKING_FOR_UPDATE",
	UpdateAvailable:     "UPDATE_STATUS_UPDATE_AVAILABLE",
	Downloading:         "UPDATE_STATUS_DOWNLOADING",
	Verifying:           "UPDATE_STATUS_VERIFYING",
	Finalizing:          "UPDATE_STATUS_FINALIZING",
	UpdatedNeedReboot:   "UPDATE_STATUS_UPDATED_NEED_REBOOT",
	ReportingErrorEvent: "UPDATE_STATUS_REPORTING_ERROR_EVENT",
}

// UnknownStatus is what Flatcar prints for a value outside the enum.
const UnknownStatus = "unknown status"

// String returns the D-Bus status string, e.g. "UPDATE_STATUS_IDLE".
func (u Update) String() string {
	if u < 0 || int(u) >= len(updateNames) {
		return UnknownStatus
	}
	return updateNames[u]
}

// ParseUpdate maps a status string back to its value.
func ParseUpdate(s string) (Update, bool) {
	for i, n := range updateNames {
		if n == s {
			return Update(i), true
		}
	}
	return 0, false
}
