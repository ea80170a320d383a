package update1

import (
	"errors"
	"reflect"
	"testing"
)

func TestOpStrings(t *testing.T) {
	want := []string{StatusIdle, StatusCheckingForUpdate, StatusUpdateAvailable, StatusDownloading,
		StatusVerifying, StatusFinalizing, StatusUpdatedNeedReboot, StatusReportingErrorEvent}
	for i, s := range want {
		if got := Op(i).String(); got != s {
			t.Errorf("Op(%d) = %q, want %q", i, got, s)
		}
		if op, ok := ParseOp(s); !ok || op != Op(i) {
			t.Errorf("ParseOp(%q) = %v, %v", s, op, ok)
		}
	}
	if UpdatedNeedReboot.String() != "UPDATE_STATUS_UPDATED_NEED_REBOOT" || Op(6) != UpdatedNeedReboot {
		t.Error("Flatcar's enum order or string changed")
	}
	if Op(-1).String() != UnknownStatus || Op(len(want)).String() != UnknownStatus {
		t.Error("out-of-range Op must print Flatcar's unknown status")
	}
	if _, ok := ParseOp("UPDATE_STATUS_BOGUS"); ok {
		t.Error("ParseOp accepted an unknown string")
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		body    []any
		want    Status
		wantErr error
	}{
		{name: "ok", body: []any{int64(1), 0.5, StatusUpdatedNeedReboot, "1.2.3", int64(99)}, want: Status{LastCheckedTime: 1, Progress: 0.5, CurrentOperation: StatusUpdatedNeedReboot, NewVersion: "1.2.3", NewSize: 99}},
		{name: "short", body: []any{int64(1)}, wantErr: ErrBadStatus},
		{name: "int32 time", body: []any{int32(1), 0.5, "x", "y", int64(1)}, wantErr: ErrBadStatus},
		{name: "string progress", body: []any{int64(1), "0.5", "x", "y", int64(1)}, wantErr: ErrBadStatus},
		{name: "uint64 size", body: []any{int64(1), 0.5, "x", "y", uint64(1)}, wantErr: ErrBadStatus},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatus(tt.body)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestStatusBody: Body is what ParseStatus reads back.
func TestStatusBody(t *testing.T) {
	st := Status{1, 0.5, StatusUpdatedNeedReboot, "1.2.3", 99}
	got, err := ParseStatus(st.Body())
	if err != nil || !reflect.DeepEqual(got, st) || !got.NeedsReboot() {
		t.Fatalf("ParseStatus(Body()) = %+v, %v; want %+v", got, err, st)
	}
}

// The literal wire strings (moved from internal/status).
func TestOpWireStrings(t *testing.T) {
	tests := []struct {
		u    Op
		want string
	}{
		{Idle, "UPDATE_STATUS_IDLE"},
		{Verifying, "UPDATE_STATUS_VERIFYING"},
		{UpdatedNeedReboot, "UPDATE_STATUS_UPDATED_NEED_REBOOT"},
		{ReportingErrorEvent, "UPDATE_STATUS_REPORTING_ERROR_EVENT"},
		{Op(8), "unknown status"},
		{Op(-1), "unknown status"},
	}
	for _, tt := range tests {
		if got := tt.u.String(); got != tt.want {
			t.Errorf("Op(%d).String() = %q, want %q", int(tt.u), got, tt.want)
		}
		if u, ok := ParseOp(tt.want); tt.want != UnknownStatus && (!ok || u != tt.u) {
			t.Errorf("ParseOp(%q) = %v, %v", tt.want, u, ok)
		}
	}
	if int(UpdatedNeedReboot) != 6 {
		t.Errorf("UpdatedNeedReboot = %d, want 6 (Flatcar enum order)", int(UpdatedNeedReboot))
	}
}
