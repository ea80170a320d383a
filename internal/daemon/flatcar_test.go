package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/engine"
	"github.com/abupdate/update_engine/internal/prefs"
	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/omaha/server"
)

// writeConf writes the host's /etc/flatcar/update.conf.
func (h *host) writeConf(t *testing.T, content string) {
	t.Helper()
	conf := filepath.Join(h.root, "etc/flatcar/update.conf")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestServerDisabled: SERVER=disabled in update.conf (what
// flatcar-update --disable-afterwards writes) does not stop the daemon:
// the health gate still marks the booted slot good, D-Bus answers IDLE,
// scheduled checks and AttemptUpdate send nothing, and setting SERVER
// again turns checks back on without a restart (update.conf is re-read
// before each check).
func TestServerDisabled(t *testing.T) {
	w := newOmaha(t)
	w.publish("v2.bin", "2.0.0", image(4<<20, 9), false)
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	d, err := slot.Open(t.Context(), disk, slot.Options{Booted: "A"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.MarkPassiveForTrial(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := simulateBoot(t, disk); n != "B" {
		t.Fatalf("trial boot %s, want B", n)
	}
	h := newHost(t, disk)
	h.writeConf(t, "# flatcar-update --disable-afterwards\nSERVER=disabled\n")
	o := h.options("")
	delete(o.Overrides, "SERVER")
	o.Booted = "B"
	o.Overrides["UPDATE_ENGINE_HEALTH_DELAY"] = "0s"
	o.NoHealthGate = false
	o.AutoCheck, o.InitialDelay, o.CheckInterval = true, time.Millisecond, 20*time.Millisecond
	runDaemon(t, o)
	c := client(t, h.bus)

	waitGood(t, disk, "B")
	deadline := time.Now().Add(20 * time.Second)
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatalf("AttemptUpdate while disabled: %v", err)
	}
	// Scheduled checks (every 20 ms) and the AttemptUpdate neither make a
	// request nor record an error (the engine's TestServerDisabled checks
	// the schedule on an injected clock).
	time.Sleep(200 * time.Millisecond)
	det, err := c.Detail(t.Context())
	if err != nil || det.Status.CurrentOperation != "UPDATE_STATUS_IDLE" || det.LastError != 0 || det.Status.LastCheckedTime != 0 {
		t.Fatalf("while disabled: %+v, %v", det, err)
	}
	if recs := w.h.Records(); len(recs) != 0 {
		t.Fatalf("the server got %d requests while SERVER=disabled: %+v", len(recs), recs)
	}

	h.writeConf(t, "SERVER="+w.url()+"\n")
	for len(w.h.Records()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no check after SERVER was set again")
		}
		if err := c.AttemptUpdate(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// updateAndStop runs the daemon with o until an AttemptUpdate has
// reached UPDATED_NEED_REBOOT, then stops it.
func updateAndStop(t *testing.T, h *host, o Options) {
	t.Helper()
	stop := runDaemon(t, o)
	c := client(t, h.bus)
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitOp(t, c, 60*time.Second, "UPDATE_STATUS_UPDATED_NEED_REBOOT")
	stop()
	c.Close()
}

// waitGood waits until the health gate has marked slot name good.
func waitGood(t *testing.T, disk, name string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !slotInfo(t, disk, name).Successful {
		if time.Now().After(deadline) {
			t.Fatalf("the health gate did not mark %s good", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// appAttrs are the <app> attributes Nebraska files a request under; every
// request of one machine's update must carry the same.
func appAttrs(r server.Record) string {
	return fmt.Sprintf("installsource=%q appid=%q version=%q track=%q machineid=%q bootid=%q board=%q alephversion=%q delta_okay=%v",
		r.InstallSource, r.AppID, r.Version, r.Track, r.MachineID, r.BootID, r.Board, r.AlephVersion, r.DeltaOK)
}

// TestEventsKeepAppAttributes: the events of an update (13/1, 14/1, 3/1,
// and 3/0 when it fails) carry the track, installsource and delta_okay of
// the check they follow, as Flatcar's do; Nebraska finds the machine's
// group by track.
func TestEventsKeepAppAttributes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		badSHA bool
		events string
	}{
		{name: "success", events: "3/2 previousversion=0.0.0.0, 13/1, 14/1, 3/1"},
		{name: "failure", badSHA: true, events: fmt.Sprintf("3/2 previousversion=0.0.0.0, 13/1, 3/0 errorcode=%d",
			int32(omaha.PayloadHashMismatchError|omaha.FlagTestOmahaURL))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newOmaha(t)
			w.publish("v2.bin", "2.0.0", image(4<<20, 10), tc.badSHA)
			disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
			h := newHost(t, disk)
			h.writeConf(t, "GROUP=beta\n")
			if err := os.MkdirAll(filepath.Join(h.root, "usr/share/flatcar"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(h.root, "usr/share/flatcar/release"), []byte("FLATCAR_RELEASE_BOARD=amd64-usr\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			runDaemon(t, h.options(w.url()))
			c := client(t, h.bus)
			if err := c.AttemptUpdate(t.Context()); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(60 * time.Second)
			for w.events() != tc.events {
				if time.Now().After(deadline) {
					t.Fatalf("events %q, want %q", w.events(), tc.events)
				}
				time.Sleep(20 * time.Millisecond)
			}
			recs := w.h.Records()
			want := `installsource="ondemandupdate" appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" version="1.0.0" track="beta" ` +
				`machineid="0123456789abcdef0123456789abcdef" bootid="` + recs[0].BootID + `" board="amd64-usr" alephversion="1.0.0" delta_okay=true`
			for i, r := range recs {
				if got := appAttrs(r); got != want {
					t.Errorf("request %d (events %v, updatecheck %v):\n got %s\nwant %s", i, r.Events, r.UpdateCheck, got, want)
				}
			}
		})
	}
}

// TestOmahaURL: the ChromeOS AttemptUpdate(s,s) omaha_url is refused with
// a reason unless the daemon allows it; allowed, that one check goes there.
func TestOmahaURL(t *testing.T) {
	w := newOmaha(t)
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	h := newHost(t, disk)
	o := h.options("http://127.0.0.1:1/v1/update/") // nobody there
	stop := runDaemon(t, o)
	c := client(t, h.bus)
	err := c.AttemptUpdateWith(t.Context(), "", w.url())
	if err == nil || !strings.Contains(err.Error(), "--allow-omaha-url") {
		t.Fatalf("omaha_url without --allow-omaha-url: %v", err)
	}
	stop()
	c.Close()

	o.AllowOmahaURL = true
	runDaemon(t, o)
	c = client(t, h.bus)
	if err := c.AttemptUpdateWith(t.Context(), "", w.url()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(w.h.Records()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the check did not go to omaha_url")
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitOp(t, c, 20*time.Second, "UPDATE_STATUS_IDLE")
}

// TestStub: on an image never updated in place (/usr/.noupdate) the stub
// owns the bus names and answers IDLE; AttemptUpdate succeeds and does
// nothing; it needs no disk.
func TestStub(t *testing.T) {
	w := newOmaha(t)
	h := newHost(t, "")
	o := h.options(w.url())
	o.Disk = filepath.Join(t.TempDir(), "no-such-disk")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- RunStub(ctx, o) }()
	c := client(t, h.bus)
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatalf("AttemptUpdate: %v", err)
	}
	if err := c.ResetStatus(t.Context()); err != nil {
		t.Fatalf("ResetStatus: %v", err)
	}
	st, err := c.GetStatus(t.Context())
	if err != nil || st.CurrentOperation != "UPDATE_STATUS_IDLE" || st.NewVersion != "0.0.0" {
		t.Fatalf("status %+v, %v", st, err)
	}
	if err := c.AttemptRollback(t.Context(), false); err == nil {
		t.Fatal("rollback accepted by the stub")
	}
	if d, err := c.Detail(t.Context()); err != nil || d.CurrentVersion != "1.0.0" {
		t.Fatalf("detail %+v, %v", d, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunStub: %v", err)
	}
	if n := len(w.h.Records()); n != 0 {
		t.Fatalf("the stub sent %d Omaha requests", n)
	}
}

// TestOwedEventKeepsTrack: the 3/1 owed across a restart (killed between
// the flip and the event) goes out before any check of the new process,
// and so do the scheduled pings while the reboot is pending: with the
// machine's track and delta_okay all the same.
func TestOwedEventKeepsTrack(t *testing.T) {
	w := newOmaha(t)
	w.publish("v2.bin", "2.0.0", image(4<<20, 13), false)
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	h := newHost(t, disk)
	h.writeConf(t, "GROUP=beta\n")
	updateAndStop(t, h, h.options(w.url()))
	// As if killed after the flip, before the 3/1 went out.
	p, err := prefs.Open(h.prefs)
	if err != nil {
		t.Fatal(err)
	}
	owe31(t, p)
	n := len(w.h.Records())
	o := h.options(w.url())
	o.AutoCheck, o.InitialDelay, o.CheckInterval = true, 50*time.Millisecond, 20*time.Millisecond
	runDaemon(t, o)
	deadline := time.Now().Add(20 * time.Second)
	for len(w.h.Records()) < n+2 {
		if time.Now().After(deadline) {
			t.Fatalf("after the restart: %d requests, want the owed 3/1 and a ping", len(w.h.Records())-n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var sawEvent, sawPing bool
	for _, r := range w.h.Records()[n:] {
		switch {
		case len(r.Events) == 1 && r.Events[0].Type == omaha.EventTypeUpdateComplete && r.Events[0].Result == omaha.EventResultSuccess && !r.Ping:
			sawEvent = true
		case r.Ping && len(r.Events) == 0 && !r.UpdateCheck:
			sawPing = true
		default:
			t.Fatalf("unexpected request after the restart: %+v", r)
		}
		if r.Track != "beta" || !r.DeltaOK {
			t.Errorf("request %+v: %s", r.Events, appAttrs(r))
		}
	}
	if !sawEvent || !sawPing {
		t.Fatalf("owed 3/1 %v, ping %v", sawEvent, sawPing)
	}
}

// owe31 marks the stored update record's 3/1 event as not sent yet, as a
// kill between the flip and the event leaves it.
func owe31(t *testing.T, p *prefs.Store) {
	t.Helper()
	b, err := p.Get(engine.KeyRecord)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	u, ok := rec["update"].(map[string]any)
	if !ok {
		t.Fatalf("no update in the record %s", b)
	}
	u["applied_owed"] = true
	if b, err = json.Marshal(rec); err != nil {
		t.Fatal(err)
	}
	if err := p.Set(engine.KeyRecord, b); err != nil {
		t.Fatal(err)
	}
}
