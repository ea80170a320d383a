package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/update1"
)

var oldImage = image(6<<20, 1)

// TestFullUpdate: a real daemon on a private bus updates an image-file
// disk from the dev Omaha server; the signals arrive in the documented
// order, the passive slot holds the new image, the GPT boots it next once,
// the active slot is untouched, and the server saw Flatcar's events. The
// payload is major version 2 (ChromeOS/Android) or 1 (Flatcar's format,
// REPLACE_BZ).
func TestFullUpdate(t *testing.T) {
	for _, major := range []uint64{2, 1} {
		t.Run(fmt.Sprintf("v%d", major), func(t *testing.T) { fullUpdate(t, major) })
	}
}

func fullUpdate(t *testing.T, major uint64) {
	w := newOmaha(t)
	w.major = major
	newImg := image(10<<20, 2)
	if p := w.publish("v2.bin", "2.0.0", newImg, false); binary.BigEndian.Uint64(p[4:12]) != major {
		t.Fatalf("published payload is major %d", binary.BigEndian.Uint64(p[4:12]))
	}
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	writeSlotA(t, disk, oldImage)
	h := newHost(t, disk)
	runDaemon(t, h.options(w.url()))
	c := client(t, h.bus)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	ue := update1.NewClient(c.Conn())
	ue.Queue = 1024 // every signal, in order
	sigs, err := ue.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AttemptUpdate(ctx); err != nil {
		t.Fatal(err)
	}
	var ops []string
	var progress []float64
	for st := range sigs {
		if len(ops) == 0 && st.CurrentOperation == "UPDATE_STATUS_IDLE" {
			continue // signals from before the check (startup, the health gate marking A good)
		}
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
	code := int32(omaha.PayloadHashMismatchError | omaha.FlagTestOmahaURL)
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

// TestKillResume builds the daemon and kills it with SIGKILL at 20
// random moments of the download and apply (each restart resumes from the
// last checkpoint with an HTTP Range request; after 10 resumes it starts
// over), then lets it finish: the slot is identical to the new image, the
// active slot was never touched, and the GPT only flipped at the end. As
// root the disk is a loop device.
func TestKillResume(t *testing.T) {
	testenv.RequireTool(t, "go")
	bin := filepath.Join(t.TempDir(), "update_engine")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/abupdate/update_engine/cmd/update_engine").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	kills := 20
	if testing.Short() {
		kills = 3
	}
	w := newOmaha(t)
	newImg := randomImage(12<<20, 4) // incompressible: the payload is as big
	w.publish("v2.bin", "2.0.0", newImg, false)
	w.setDelay(5 * time.Millisecond)
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
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("KILL_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("kill seed %d (KILL_SEED=%d repeats it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	var killedAt []string
	for i := range kills {
		if i == kills-6 {
			// The last kills run at full speed, so some land in
			// VERIFYING or FINALIZING.
			w.setDelay(0)
		}
		d := start()
		c := client(t, h.bus)
		// The first start needs the request; later ones resume by
		// themselves (the request is then ignored).
		if err := c.AttemptUpdate(t.Context()); err != nil {
			t.Fatal(err)
		}
		wait := time.Duration(20+rng.IntN(230)) * time.Millisecond
		if i >= kills-6 {
			wait = time.Duration(rng.IntN(120)) * time.Millisecond
		}
		deadline := time.Now().Add(wait)
		var st update1.Status
		for time.Now().Before(deadline) {
			if s, err := c.GetStatus(t.Context()); err == nil {
				st = s
			}
			if st.CurrentOperation == "UPDATE_STATUS_UPDATED_NEED_REBOOT" {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := d.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = d.Wait()
		c.Close()
		killedAt = append(killedAt, fmt.Sprintf("%s@%.2f", strings.TrimPrefix(st.CurrentOperation, "UPDATE_STATUS_"), st.Progress))
		if st.CurrentOperation == "UPDATE_STATUS_UPDATED_NEED_REBOOT" {
			break
		}
		// A kill may land between the flip and UPDATED_NEED_REBOOT; the
		// invariant is that B only boots next once it holds the whole,
		// verified image.
		if n := nextBoot(t, img); n != "A" {
			if got := readSlot(t, img, "B", len(newImg)); !bytes.Equal(got, newImg) {
				t.Fatalf("kill %d: next boot %q, but slot B does not hold the new image", i, n)
			}
		}
		if got := readSlot(t, img, "A", len(oldImage)); !bytes.Equal(got, oldImage) {
			t.Fatalf("kill %d: slot A (active) was modified", i)
		}
	}
	t.Logf("killed at %v", killedAt)

	w.setDelay(0)
	before := len(w.rangeHeaders())
	start()
	c2 := client(t, h.bus)
	if err := c2.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := waitOp(t, c2, 60*time.Second, "UPDATE_STATUS_UPDATED_NEED_REBOOT", "UPDATE_STATUS_IDLE")
	d, _ := c2.Detail(t.Context())
	if st.CurrentOperation != "UPDATE_STATUS_UPDATED_NEED_REBOOT" {
		t.Fatalf("update ended %+v, detail %+v", st, d)
	}
	ranges := w.rangeHeaders()
	resumed := 0
	for _, r := range ranges {
		if r != "" {
			resumed++
		}
	}
	t.Logf("payload requests: %d, with Range: %d; last %q", len(ranges), resumed, ranges[before:])
	if resumed == 0 {
		t.Fatal("no download was ever resumed with a Range request")
	}
	if got := readSlot(t, img, "B", len(newImg)); !bytes.Equal(got, newImg) {
		t.Fatal("slot B differs from the new image")
	}
	if got := readSlot(t, img, "A", len(oldImage)); !bytes.Equal(got, oldImage) {
		t.Fatal("slot A (active) was modified")
	}
	if n := nextBoot(t, img); n != "B" {
		t.Fatalf("next boot %q, want B", n)
	}
	if ev := w.events(); !strings.HasSuffix(ev, "14/1, 3/1") {
		t.Fatalf("server events %q", ev)
	}
}

// TestBusLost: when the bus goes away the daemon stops with ErrBusLost
// (and systemd restarts it).
func TestBusLost(t *testing.T) {
	w := newOmaha(t)
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	h := newHost(t, disk)
	bus := testenv.StartDBus(t) // a bus of our own that we can kill
	h.bus = bus.Addr
	o := h.options(w.url())
	done := make(chan error, 1)
	go func() { done <- Run(t.Context(), o) }()
	client(t, h.bus)
	bus.Kill()
	select {
	case err := <-done:
		if !errors.Is(err, ErrBusLost) {
			t.Fatalf("Run = %v, want ErrBusLost", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the daemon kept running without its bus")
	}
}

// TestUpdateConfReread: like Flatcar, GROUP is re-read from update.conf
// before every check.
func TestUpdateConfReread(t *testing.T) {
	w := newOmaha(t)
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	h := newHost(t, disk)
	conf := filepath.Join(h.root, "etc/flatcar/update.conf")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	runDaemon(t, h.options(w.url()))
	c := client(t, h.bus)
	for _, group := range []string{"stable", "beta"} {
		if group != "stable" {
			if err := os.WriteFile(conf, []byte("GROUP="+group+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		n := len(w.h.Records())
		if err := c.AttemptUpdate(t.Context()); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for len(w.h.Records()) == n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		waitOp(t, c, 20*time.Second, "UPDATE_STATUS_IDLE")
		recs := w.h.Records()
		if got := recs[len(recs)-1].Track; got != group {
			t.Fatalf("track %q, want %q", got, group)
		}
	}
}
