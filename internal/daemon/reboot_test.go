package daemon

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/testenv"
)

func simulateBoot(t *testing.T, disk string) string {
	t.Helper()
	d, err := slot.Open(t.Context(), disk, slot.Options{Booted: "A"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := d.SimulateBoot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func slotInfo(t *testing.T, disk, name string) slot.Info {
	t.Helper()
	slots, _, err := slot.List(disk)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no slot %s", name)
	return slot.Info{}
}

// TestRebootMarkGoodThenDelta: update 1.0.0 → 2.0.0, reboot into B (the
// bootloader spends its try), the health gate marks B good, the next check
// reports 3/2 previousversion=1.0.0, and a delta 2.0.0 → 3.0.0 is applied
// onto A with B as the source.
func TestRebootMarkGoodThenDelta(t *testing.T) {
	w := newOmaha(t)
	v2 := image(8<<20, 5)
	w.publish("v2.bin", "2.0.0", v2, false)
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	writeSlotA(t, disk, oldImage)
	h := newHost(t, disk)
	updateAndStop(t, h, h.options(w.url()))

	if n := simulateBoot(t, disk); n != "B" {
		t.Fatalf("booted %s, want B", n)
	}
	if s := slotInfo(t, disk, "B"); s.Tries != 0 || s.Successful {
		t.Fatalf("after the trial boot B = %+v, want tries 0, not yet successful", s)
	}
	h.run = t.TempDir() // /run is empty after a reboot
	o := h.options(w.url())
	o.Booted = "B"
	o.Overrides["FLATCAR_RELEASE_VERSION"] = "2.0.0"
	o.Overrides["UPDATE_ENGINE_HEALTH_DELAY"] = "0s"
	o.NoHealthGate = false
	runDaemon(t, o)
	c2 := client(t, h.bus)
	waitGood(t, disk, "B")

	v3 := append(bytes.Clone(v2[:6<<20]), image(3<<20, 6)...)
	w.publishDelta("v3-delta.bin", "3.0.0", v3, false, "2.0.0", v2)
	before := len(w.h.Events())
	if err := c2.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := waitOp(t, c2, 60*time.Second, "UPDATE_STATUS_UPDATED_NEED_REBOOT", "UPDATE_STATUS_IDLE")
	if st.CurrentOperation != "UPDATE_STATUS_UPDATED_NEED_REBOOT" || st.NewVersion != "3.0.0" {
		d, _ := c2.Detail(t.Context())
		t.Fatalf("delta update ended %+v, %+v", st, d)
	}
	if got := readSlot(t, disk, "A", len(v3)); !bytes.Equal(got, v3) {
		t.Fatal("slot A does not hold 3.0.0 after the delta")
	}
	if got := readSlot(t, disk, "B", len(v2)); !bytes.Equal(got, v2) {
		t.Fatal("slot B (active, the delta source) was modified")
	}
	if n := nextBoot(t, disk); n != "A" {
		t.Fatalf("next boot %s, want A", n)
	}
	evs := w.events()
	if !strings.Contains(evs, "3/2 previousversion=1.0.0, 13/1, 14/1, 3/1") || len(w.h.Events()) != before+4 {
		t.Fatalf("events %q", evs)
	}
	recs := w.h.Records()
	last := recs[len(recs)-4]
	if last.Offered != "v3-delta.bin" {
		t.Fatalf("offered %q, want the delta", last.Offered)
	}
}

// TestRollbackReported: the new slot failed to boot and the machine came
// back on the old version: the next check reports 3/0 errorcode=44.
func TestRollbackReported(t *testing.T) {
	w := newOmaha(t)
	w.publish("v2.bin", "2.0.0", image(4<<20, 7), false)
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	h := newHost(t, disk)
	updateAndStop(t, h, h.options(w.url()))
	// B gets its one try and fails; the bootloader falls back to A.
	simulateBoot(t, disk)
	if n := simulateBoot(t, disk); n != "A" {
		t.Fatalf("fallback booted %s, want A", n)
	}
	h.run = t.TempDir()
	if err := os.RemoveAll(filepath.Join(h.run, MarkerName)); err != nil {
		t.Fatal(err)
	}
	runDaemon(t, h.options(w.url()))
	c2 := client(t, h.bus)
	d, err := c2.Detail(t.Context())
	if err != nil || d.LastError != 44 {
		t.Fatalf("detail after rollback %+v, %v; want last_error_code 44", d, err)
	}
	w.h.SetPaused(true)
	before := len(w.h.Events())
	if err := c2.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(w.h.Events()) == before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	evs := w.h.Events()[before:]
	if len(evs) != 1 || evs[0].Type != 3 || evs[0].Result != 0 || evs[0].ErrorCode == nil || *evs[0].ErrorCode != 44 {
		t.Fatalf("events after rollback %s, want 3/0 errorcode=44", w.events())
	}
}

// TestDeltaFailsThenFull: the server offers a delta whose source is not
// the booted slot. The delta is refused before a byte is written, and the
// next check sends delta_okay="false" and gets the full payload, instead
// of the same delta forever.
func TestDeltaFailsThenFull(t *testing.T) {
	w := newOmaha(t)
	v2 := image(6<<20, 7)
	otherV2 := image(6<<20, 8) // what the delta was built from
	v3 := append(bytes.Clone(v2[:4<<20]), image(2<<20, 9)...)
	w.publishDelta("v3-delta.bin", "3.0.0", v3, false, "2.0.0", otherV2)
	w.publish("v3.bin", "3.0.0", v3, false)
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	writeSlotA(t, disk, v2)
	h := newHost(t, disk)
	o := h.options(w.url())
	o.Overrides["FLATCAR_RELEASE_VERSION"] = "2.0.0"
	runDaemon(t, o)
	c := client(t, h.bus)

	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := waitOp(t, c, 60*time.Second, "UPDATE_STATUS_IDLE", "UPDATE_STATUS_UPDATED_NEED_REBOOT"); st.CurrentOperation != "UPDATE_STATUS_IDLE" {
		t.Fatalf("the mismatched delta ended in %+v", st)
	}
	if got := readSlot(t, disk, "B", 1<<20); !bytes.Equal(got, make([]byte, 1<<20)) {
		t.Fatal("slot B was written by a delta whose source did not match")
	}
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := waitOp(t, c, 60*time.Second, "UPDATE_STATUS_IDLE", "UPDATE_STATUS_UPDATED_NEED_REBOOT"); st.CurrentOperation != "UPDATE_STATUS_UPDATED_NEED_REBOOT" {
		d, _ := c.Detail(t.Context())
		t.Fatalf("the second attempt ended in %+v, %+v", st, d)
	}
	if got := readSlot(t, disk, "B", len(v3)); !bytes.Equal(got, v3) {
		t.Fatal("slot B does not hold 3.0.0")
	}
	var checks []string
	for _, r := range w.h.Records() {
		if r.UpdateCheck {
			checks = append(checks, fmt.Sprintf("delta_okay=%v offered=%s", r.DeltaOK, r.Offered))
		}
	}
	want := []string{"delta_okay=true offered=v3-delta.bin", "delta_okay=false offered=v3.bin"}
	if !slices.Equal(checks, want) {
		t.Fatalf("update checks\n got %q\nwant %q", checks, want)
	}
}
