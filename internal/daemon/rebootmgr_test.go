package daemon

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/rebootmgr"
)

// fakeLogind records Reboot calls; it lists no inhibitors.
type fakeLogind struct{ reboots chan bool }

func (l *fakeLogind) export(t *testing.T, bus string) {
	t.Helper()
	conn, err := dbus.Connect(bus)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	type inhibitor struct {
		What, Who, Why, Mode string
		UID, PID             uint32
	}
	err = conn.ExportMethodTable(map[string]any{
		"Reboot":         func(interactive bool) *dbus.Error { l.reboots <- interactive; return nil },
		"ListInhibitors": func() ([]inhibitor, *dbus.Error) { return nil, nil },
	}, rebootmgr.LogindPath, rebootmgr.LogindInterface)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := conn.RequestName(rebootmgr.LogindName, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: %v %v", rebootmgr.LogindName, r, err)
	}
}

// TestRebootManagerReactsToDaemon: the reboot manager, on the same bus as
// the real daemon, reboots through logind once the daemon's StatusUpdate
// says UPDATE_STATUS_UPDATED_NEED_REBOOT, and not before.
func TestRebootManagerReactsToDaemon(t *testing.T) {
	w := newOmaha(t)
	w.publish("v2.bin", "2.0.0", image(4<<20, 5), false)
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	writeSlotA(t, disk, oldImage)
	h := newHost(t, disk)
	runDaemon(t, h.options(w.url()))
	logind := &fakeLogind{reboots: make(chan bool, 4)}
	logind.export(t, h.bus)

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	var out bytes.Buffer
	mgrDone := make(chan int, 1)
	go func() {
		mgrDone <- rebootmgr.Main(ctx, []string{"run", "--bus", h.bus, "--strategy", "reboot", "--config", dir + "/none.conf",
			"--coordinator-file", dir + "/coordinator.conf", "--state-file", dir + "/intent.json", "--utmp", dir + "/utmp",
			"--warn-delay", "0s", "--machine-id", "0123456789abcdef0123456789abcdef"}, &out, &out)
	}()
	t.Cleanup(func() { cancel(); <-mgrDone })

	select {
	case <-logind.reboots:
		t.Fatalf("rebooted while idle\n%s", out.String())
	case <-time.After(300 * time.Millisecond):
	}
	c := client(t, h.bus)
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case interactive := <-logind.reboots:
		if interactive {
			t.Error("Reboot(true): want a non-interactive Reboot(false)")
		}
		st, err := c.GetStatus(t.Context())
		if err != nil || st.CurrentOperation != "UPDATE_STATUS_UPDATED_NEED_REBOOT" {
			t.Fatalf("rebooted with the daemon in %+v, %v", st, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no Reboot call after the update\n%s", out.String())
	}
}
