package update1

import (
	"errors"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/godbus/dbus/v5"
)

// fakeDaemon serves GetStatus and a refusing ResetStatus on a private bus.
type fakeDaemon struct{ st Status }

func (d *fakeDaemon) GetStatus() (int64, float64, string, string, int64, *dbus.Error) {
	return d.st.LastCheckedTime, d.st.Progress, d.st.CurrentOperation, d.st.NewVersion, d.st.NewSize, nil
}

func (d *fakeDaemon) ResetStatus() *dbus.Error {
	return dbus.NewError(ErrorFailed, []any{"not in UPDATED_NEED_REBOOT"})
}

// TestClientOnBus: a real dbus-daemon; the client's calls reach the
// object by the names here, a refusal maps to ErrFailed, and a missing
// daemon to ErrNotRunning.
func TestClientOnBus(t *testing.T) {
	addr := testenv.DBus(t)
	c, err := Dial(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.GetStatus(t.Context()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("GetStatus with nobody on %s = %v, want ErrNotRunning", Name, err)
	}

	srv, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	d := &fakeDaemon{st: Status{LastCheckedTime: 1700000000, Progress: 0.25, CurrentOperation: StatusDownloading, NewVersion: "2.0.0", NewSize: 42}}
	if err := srv.ExportMethodTable(map[string]any{MethodGetStatus: d.GetStatus, MethodResetStatus: d.ResetStatus}, Path, Interface); err != nil {
		t.Fatal(err)
	}
	if reply, err := srv.RequestName(Name, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName = %v, %v", reply, err)
	}

	got, err := c.GetStatus(t.Context())
	if err != nil || got != d.st {
		t.Fatalf("GetStatus = %+v, %v; want %+v", got, err, d.st)
	}
	if err := c.ResetStatus(t.Context()); !errors.Is(err, ErrFailed) {
		t.Errorf("refused ResetStatus = %v, want ErrFailed", err)
	}

	// Watch delivers the owner's signal.
	c.Queue = 4
	ch, err := c.Watch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	next := d.st // d.st is read by the handler's goroutine: leave it
	next.Progress = 0.5
	if err := srv.Emit(dbus.ObjectPath(Path), Interface+"."+SignalStatusUpdate, next.Body()...); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-ch:
		if st != next {
			t.Errorf("Watch delivered %+v, want %+v", st, next)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no status from Watch within 10 s")
	}
}
