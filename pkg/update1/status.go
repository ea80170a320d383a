package update1

import (
	"errors"
	"fmt"
)

// ErrBadStatus: a GetStatus reply or StatusUpdate body that is not
// (int64, float64, string, string, int64).
var ErrBadStatus = errors.New("update1: malformed update_engine status")

// Status is the five values of GetStatus and StatusUpdate (signature
// xdssx), in wire order.
type Status struct {
	LastCheckedTime  int64   `json:"last_checked_time"` // unix seconds of the last successful check, 0 before
	Progress         float64 `json:"progress"`          // download fraction 0.0–1.0
	CurrentOperation string  `json:"current_operation"` // e.g. "UPDATE_STATUS_IDLE"
	NewVersion       string  `json:"new_version"`       // "0.0.0" when none
	NewSize          int64   `json:"new_size"`          // payload size in bytes
}

// NeedsReboot reports whether an update is staged and waits for a reboot.
func (s Status) NeedsReboot() bool { return s.CurrentOperation == StatusUpdatedNeedReboot }

// Body is s as a D-Bus message body, in wire order.
func (s Status) Body() []any {
	return []any{s.LastCheckedTime, s.Progress, s.CurrentOperation, s.NewVersion, s.NewSize}
}

// ParseStatus type-checks every field of a D-Bus body.
func ParseStatus(body []any) (Status, error) {
	var s Status
	if len(body) != 5 {
		return s, fmt.Errorf("%w: %d fields, want 5", ErrBadStatus, len(body))
	}
	var ok [5]bool
	s.LastCheckedTime, ok[0] = body[0].(int64)
	s.Progress, ok[1] = body[1].(float64)
	s.CurrentOperation, ok[2] = body[2].(string)
	s.NewVersion, ok[3] = body[3].(string)
	s.NewSize, ok[4] = body[4].(int64)
	for i, good := range ok {
		if !good {
			return Status{}, fmt.Errorf("%w: field %d is %T", ErrBadStatus, i, body[i])
		}
	}
	return s, nil
}

// Detail is the richer status of our GetStatusJSON. Fields the engine
// does not know are left zero.
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
