package status

import (
	"errors"
	"fmt"
	"testing"
)

func TestUpdateStrings(t *testing.T) {
	tests := []struct {
		u    Update
		want string
	}{
		{Idle, "UPDATE_STATUS_IDLE"},
		{Verifying, "UPDATE_STATUS_VERIFYING"},
		{UpdatedNeedReboot, "UPDATE_STATUS_UPDATED_NEED_REBOOT"},
		{ReportingErrorEvent, "UPDATE_STATUS_REPORTING_ERROR_EVENT"},
		{Update(8), "unknown status"},
		{Update(-1), "unknown status"},
	}
	for _, tt := range tests {
		if got := tt.u.String(); got != tt.want {
			t.Errorf("Update(%d).String() = %q, want %q", int(tt.u), got, tt.want)
		}
		if u, ok := ParseUpdate(tt.want); tt.want != UnknownStatus && (!ok || u != tt.u) {
			t.Errorf("ParseUpdate(%q) = %v, %v", tt.want, u, ok)
		}
	}
	if int(UpdatedNeedReboot) != 6 {
		t.Errorf("UpdatedNeedReboot = %d, want 6 (Flatcar enum order)", int(UpdatedNeedReboot))
	}
}

func TestCodeOf(t *testing.T) {
	base := errors.New("connection reset")
	err := fmt.Errorf("download: %w", WithCode(DownloadTransferError, base))
	if got := CodeOf(err); got != DownloadTransferError {
		t.Errorf("CodeOf = %v", got)
	}
	if !errors.Is(err, base) {
		t.Error("cause lost")
	}
	if !errors.Is(err, DownloadTransferError) {
		t.Error("errors.Is(err, DownloadTransferError) = false")
	}
	if errors.Is(err, PayloadHashMismatchError) {
		t.Error("errors.Is matched the wrong code")
	}
	if CodeOf(nil) != Success || CodeOf(base) != Error {
		t.Error("CodeOf(nil|plain) wrong")
	}
	if WithCode(Error, nil) != nil {
		t.Error("WithCode(nil) != nil")
	}
}
