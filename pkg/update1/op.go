package update1

// Op is the engine's update status (FUE enum UpdateStatus): its numeric
// value is the enum order, its String the CURRENT_OP string of the status
// tuple.
type Op int

// The update states, in Flatcar's order.
const (
	Idle                Op = iota // UPDATE_STATUS_IDLE
	CheckingForUpdate             // UPDATE_STATUS_CHECKING_FOR_UPDATE
	UpdateAvailable               // UPDATE_STATUS_UPDATE_AVAILABLE
	Downloading                   // UPDATE_STATUS_DOWNLOADING
	Verifying                     // UPDATE_STATUS_VERIFYING
	Finalizing                    // UPDATE_STATUS_FINALIZING
	UpdatedNeedReboot             // UPDATE_STATUS_UPDATED_NEED_REBOOT
	ReportingErrorEvent           // UPDATE_STATUS_REPORTING_ERROR_EVENT
)

// The CURRENT_OP strings, for callers that compare the tuple's string.
const (
	StatusIdle                = "UPDATE_STATUS_IDLE"
	StatusCheckingForUpdate   = "UPDATE_STATUS_CHECKING_FOR_UPDATE"
	StatusUpdateAvailable     = "UPDATE_STATUS_UPDATE_AVAILABLE"
	StatusDownloading         = "UPDATE_STATUS_DOWNLOADING"
	StatusVerifying           = "UPDATE_STATUS_VERIFYING"
	StatusFinalizing          = "UPDATE_STATUS_FINALIZING"
	StatusUpdatedNeedReboot   = "UPDATE_STATUS_UPDATED_NEED_REBOOT"
	StatusReportingErrorEvent = "UPDATE_STATUS_REPORTING_ERROR_EVENT"

	// StatusPrefix begins every CURRENT_OP string.
	StatusPrefix = "UPDATE_STATUS_"
)

var opNames = [...]string{
	Idle:                StatusIdle,
	CheckingForUpdate:   StatusCheckingForUpdate,
	UpdateAvailable:     StatusUpdateAvailable,
	Downloading:         StatusDownloading,
	Verifying:           StatusVerifying,
	Finalizing:          StatusFinalizing,
	UpdatedNeedReboot:   StatusUpdatedNeedReboot,
	ReportingErrorEvent: StatusReportingErrorEvent,
}

// UnknownStatus is what Flatcar prints for a value outside the enum.
const UnknownStatus = "unknown status"

// String returns the CURRENT_OP string, e.g. "UPDATE_STATUS_IDLE".
func (o Op) String() string {
	if o < 0 || int(o) >= len(opNames) {
		return UnknownStatus
	}
	return opNames[o]
}

// ParseOp maps a CURRENT_OP string back to its value.
func ParseOp(s string) (Op, bool) {
	for i, n := range opNames {
		if n == s {
			return Op(i), true
		}
	}
	return 0, false
}
