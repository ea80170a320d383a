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
	st := Status{1, 0.5, StatusUpdatedNeedReboot, "1.2.3", 99}
	got, err := ParseStatus(st.Body())
	if err != nil || !reflect.DeepEqual(got, st) || !got.NeedsReboot() {
		t.Fatalf("ParseStatus(Body()) = %+v, %v; want %+v", got, err, st)
	}
	for name, body := range map[string][]any{
		"short":       {int64(1)},
		"int32 time":  {int32(1), 0.5, "x", "y", int64(1)},
		"uint64 size": {int64(1), 0.5, "x", "y", uint64(1)},
	} {
		if _, err := ParseStatus(body); !errors.Is(err, ErrBadStatus) {
			t.Errorf("%s: err = %v, want ErrBadStatus", name, err)
		}
	}
}
