package daemon

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/internal/testenv"
)

var oldImage = image(6<<20, 1)

// TestFullUpdate: a real daemon on a private bus updates an image-file
// disk from the dev Omaha server; the signals arrive in the documented
// order, the passive slot holds the new image, the GPT boots it next once,
// the active slot is untouched, and the server saw Flatcar's events.
func TestFullUpdate(t *testing.T) {
	w := newOmaha(t)
	newImg := image(10<<20, 2)
	w.publish("v2.bin", "2.0.0", newImg, false)
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	writeSlotA(t, disk, oldImage)
	h := newHost(t, disk)
	runDaemon(t, h.options(w.url()))
	c := client(t, h.bus)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	sigs, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AttemptUpdate(ctx); err != nil {
		t.Fatal(err)
	}
	var ops []string
	var progress []float64
	for st := range sigs {
		if len(ops) == 0 || ops[len(ops)-1] != st.CurrentOperation {
			ops = append(ops, st.CurrentOperation)
		}
		if st.CurrentOperation == "UPDATE_STATUS_DOWNLOADING" {
			progress = append(progress, st.Progress)
		}
		if st.CurrentOperation == "UPDATE_STATUS_UPDATED_NEED_REBOOT" || st.CurrentOperation == "UPDATE_STATUS_IDLE" {
			break
		}
	}
	want := []string{"UPDATE_STATUS_CHECKING_FOR_UPDATE", "UPDATE_STATUS_UPDATE_AVAILABLE", "UPDATE_STATUS_DOWNLOADING",
		"UPDATE_STATUS_VERIFYING", "UPDATE_STATUS_FINALIZING", "UPDATE_STATUS_UPDATED_NEED_REBOOT"}
	if !slices.Equal(ops, want) {
		d, _ := c.Detail(ctx)
		t.Fatalf("StatusUpdate order\n got %v\nwant %v\ndetail %+v", ops, want, d)
	}
	if !slices.IsSorted(progress) || len(progress) < 2 {
		t.Errorf("download progress signals %v", progress)
	}
	st, _ := c.GetStatus(ctx)
	if st.NewVersion != "2.0.0" || st.NewSize == 0 {
		t.Fatalf("status %+v", st)
	}
	if got := readSlot(t, disk, "B", len(newImg)); !bytes.Equal(got, newImg) {
		t.Fatal("slot B does not hold the new image")
	}
	if got := readSlot(t, disk, "A", len(oldImage)); !bytes.Equal(got, oldImage) {
		t.Fatal("slot A (active) was modified")
	}
	if n := nextBoot(t, disk); n != "B" {
		t.Fatalf("next boot %q, want B", n)
	}
	if got, want := w.events(), "3/2 previousversion=0.0.0.0, 13/1, 14/1, 3/1"; got != want {
		t.Fatalf("server events %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(h.run, MarkerName)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(h.run, "reboot-required")); err != nil {
		t.Fatal(err)
	}
	d, err := c.Detail(ctx)
	if err != nil || d.NextBootSlot != "B" || d.BootedSlot != "A" || d.CurrentVersion != "1.0.0" {
		t.Fatalf("detail %+v %v", d, err)
	}
}

// TestCorruptPayload: Omaha's SHA-256 does not match the payload: no flip,
// and the server records 3/0 with errorcode 10|TestOmahaURL.
func TestCorruptPayload(t *testing.T) {
	w := newOmaha(t)
	w.publish("v2.bin", "2.0.0", image(4<<20, 3), true)
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	h := newHost(t, disk)
	runDaemon(t, h.options(w.url()))
	c := client(t, h.bus)
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitOp(t, c, 5*time.Second, "UPDATE_STATUS_CHECKING_FOR_UPDATE", "UPDATE_STATUS_DOWNLOADING", "UPDATE_STATUS_REPORTING_ERROR_EVENT", "UPDATE_STATUS_IDLE")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(w.events(), "3/0") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	waitOp(t, c, 30*time.Second, "UPDATE_STATUS_IDLE")
	code := int32(status.PayloadHashMismatchError | status.FlagTestOmahaURL)
	if got, want := w.events(), fmt.Sprintf("3/2 previousversion=0.0.0.0, 13/1, 3/0 errorcode=%d", code); got != want {
		t.Fatalf("server events %q, want %q", got, want)
	}
	if n := nextBoot(t, disk); n != "A" {
		t.Fatalf("next boot %q after a corrupt payload", n)
	}
	d, err := c.Detail(t.Context())
	if err != nil || d.LastError != code {
		t.Fatalf("detail %+v, %v", d, err)
	}
}

// TestKillResume builds the daemon, kills it with SIGKILL in the middle of
// the download, restarts it and checks that the update resumes with an
// HTTP Range request and ends with the identical slot; the active slot is
// never touched. As root the disk is a loop device.
func TestKillResume(t *testing.T) {
	testenv.RequireTool(t, "go")
	bin := filepath.Join(t.TempDir(), "update_engine")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/abupdate/update_engine/cmd/update_engine").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	w := newOmaha(t)
	newImg := image(12<<20, 4)
	w.publish("v2.bin", "2.0.0", newImg, false)
	w.setDelay(3 * time.Millisecond)
	img := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	writeSlotA(t, img, oldImage)
	disk := img
	if os.Geteuid() == 0 {
		disk = testenv.LoopDevice(t, img)
	}
	h := newHost(t, disk)
	args := h.args(w.url())
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, args...)
		var logs bytes.Buffer
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("daemon log:\n%s", logs.String())
			}
		})
		return cmd
	}
	daemon1 := start()
	c := client(t, h.bus)
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := c.GetStatus(t.Context())
		if err == nil && st.CurrentOperation == "UPDATE_STATUS_DOWNLOADING" && st.Progress > 0.35 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("download did not reach 35%%: %+v %v", st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := daemon1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = daemon1.Wait()
	if n := nextBoot(t, img); n != "A" {
		t.Fatalf("next boot %q after the kill", n)
	}
	c.Close()

	w.setDelay(0)
	before := len(w.rangeHeaders())
	start()
	c2 := client(t, h.bus)
	// The interrupted update makes the daemon check again at once; an
	// explicit AttemptUpdate is ignored if it already started.
	if err := c2.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := waitOp(t, c2, 60*time.Second, "UPDATE_STATUS_UPDATED_NEED_REBOOT", "UPDATE_STATUS_IDLE")
	d, _ := c2.Detail(t.Context())
	if st.CurrentOperation != "UPDATE_STATUS_UPDATED_NEED_REBOOT" {
		t.Fatalf("resumed update ended %+v, detail %+v", st, d)
	}
	if d.Resumes != 1 {
		t.Fatalf("resumes %d, want 1 (detail %+v)", d.Resumes, d)
	}
	after := w.rangeHeaders()[before:]
	if len(after) != 1 || !strings.HasPrefix(after[0], "bytes=") || after[0] == "bytes=0-" {
		t.Fatalf("payload requests after restart %q, want one Range request", after)
	}
	if got := readSlot(t, img, "B", len(newImg)); !bytes.Equal(got, newImg) {
		t.Fatal("slot B differs from the new image after the resumed update")
	}
	if got := readSlot(t, img, "A", len(oldImage)); !bytes.Equal(got, oldImage) {
		t.Fatal("slot A (active) was modified")
	}
	if n := nextBoot(t, img); n != "B" {
		t.Fatalf("next boot %q, want B", n)
	}
	if ev := w.events(); !strings.HasSuffix(ev, "13/1, 14/1, 3/1") {
		t.Fatalf("server events %q", ev)
	}
}
