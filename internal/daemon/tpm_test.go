package daemon

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/antirollback"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/omaha"
)

// TestTPMFloorAndPCR runs the daemon against swtpm: an offer below the TPM
// version floor is refused (3/9 errorcode=35); above it, the update goes
// through and the new image is measured into a PCR at flip, with the
// record kept in prefs.
func TestTPMFloorAndPCR(t *testing.T) {
	tpm := tpmWithFloor(t, "2.5.0")

	w := newOmaha(t)
	w.publish("v2.bin", "2.0.0", image(2<<20, 30), false)
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	h := newHost(t, disk)
	o := h.options(w.url())
	o.TPM, o.RequireTPM, o.MeasurePCR = tpm.Addr, true, 9
	stop := runDaemon(t, o)
	c := client(t, h.bus)
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor := func(cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(func() bool { return strings.Contains(w.events(), "3/9") })
	code := int32(omaha.OmahaUpdateIgnoredPerPolicy | omaha.FlagTestOmahaURL)
	if got, want := w.events(), fmt.Sprintf("3/2 previousversion=0.0.0.0, 3/9 errorcode=%d", code); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if n := nextBoot(t, disk); n != "A" {
		t.Fatalf("next boot %s after a refused offer", n)
	}
	waitOp(t, c, 10*time.Second, "UPDATE_STATUS_IDLE")

	w.publish("v3.bin", "3.0.0", image(2<<20, 31), false)
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := waitOp(t, c, 60*time.Second, "UPDATE_STATUS_UPDATED_NEED_REBOOT", "UPDATE_STATUS_IDLE")
	if st.CurrentOperation != "UPDATE_STATUS_UPDATED_NEED_REBOOT" || st.NewVersion != "3.0.0" {
		d, _ := c.Detail(t.Context())
		t.Fatalf("update above the floor: %+v %+v", st, d)
	}
	stop()
	b, err := os.ReadFile(filepath.Join(h.prefs, "pcr-record"))
	if err != nil {
		t.Fatalf("no PCR record: %v", err)
	}
	var rec antirollback.PCRRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.PCR != 9 || len(rec.ImageSHA256) != 64 || rec.Expected == rec.Before {
		t.Fatalf("PCR record %s (%v)", b, err)
	}
}

// tpmWithFloor starts swtpm with its version floor raised to floor and
// returns it. It skips t without swtpm.
func tpmWithFloor(t *testing.T, floor string) *testenv.Swtpm {
	t.Helper()
	testenv.RequireTool(t, "swtpm")
	tpm := testenv.StartSwtpm(t, t.TempDir())
	g, err := antirollback.Open(t.Context(), antirollback.Config{Addr: tpm.Addr, Require: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Raise(t.Context(), floor); err != nil {
		t.Fatal(err)
	}
	return tpm
}
