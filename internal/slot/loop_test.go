package slot_test

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/testenv"
)

// TestLoopDevice: on a whole-disk loop device the slots are opened through
// their partition nodes (or by offset with ByOffset), the booted slot is
// found from a /dev path on the command line, O_DIRECT works, and the
// flips reach the disk.
func TestLoopDevice(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ss       int
		byOffset bool
	}{{"512 nodes", 512, false}, {"512 offset", 512, true}, {"4096 nodes", 4096, false}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			_, dev := testenv.NewDiskLoop(t, testenv.DiskSpec{SlotSize: 1 << 20, SectorSize: tc.ss})
			d, err := slot.Open(ctx, dev, slot.Options{Cmdline: "root=" + dev + "p3 quiet", Direct: true, ByOffset: tc.byOffset})
			if err != nil {
				t.Fatal(err)
			}
			if d.Booted() != "A" {
				t.Fatalf("booted %s", d.Booted())
			}
			a, p := d.BootedSlot(), d.PassiveSlot()
			wantDev := map[bool]string{false: dev + "p4", true: ""}[tc.byOffset]
			if p.Device != wantDev || (!tc.byOffset && a.Device != dev+"p3") {
				t.Fatalf("devices %q %q", a.Device, p.Device)
			}
			if want := map[bool]string{false: dev + "p4", true: dev}[tc.byOffset]; d.PassiveDevice() != want {
				t.Fatalf("PassiveDevice %s", d.PassiveDevice())
			}
			w, err := d.OpenPassive(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !w.Direct() || !strings.HasPrefix(w.Path(), dev) {
				t.Fatalf("writer direct=%v path %s", w.Direct(), w.Path())
			}
			buf := slot.AlignedBuffer(int(p.Size))
			copy(buf, pattern(len(buf), 7))
			if _, err := w.WriteAt(buf, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := w.WriteAt(buf[:4096], p.Size); err == nil {
				t.Fatal("write past the slot accepted")
			}
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
			w.Close()
			// Read back through the whole disk at the slot's offset.
			f, err := os.Open(dev)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, p.Size)
			_, err = f.ReadAt(got, p.Start)
			f.Close()
			if err != nil || !bytes.Equal(got, buf) {
				t.Fatalf("slot B on disk differs (%v)", err)
			}
			if err := d.MarkPassiveForTrial(ctx); err != nil {
				t.Fatal(err)
			}
			if n, _ := d.NextBoot(ctx); n != "B" {
				t.Fatalf("NextBoot %s", n)
			}
			if out, err := runCmd("sgdisk", "-v", dev); err != nil || !strings.Contains(out, "No problems found.") {
				t.Fatalf("sgdisk -v %s: %v\n%s", dev, err, out)
			}
		})
	}
}

// TestPassiveMounted (root): a passive slot whose partition is mounted is
// refused with ErrBusy (O_EXCL), with and without O_DIRECT, and nothing is
// written; once unmounted it opens and takes writes.
func TestPassiveMounted(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run(map[bool]string{true: "direct", false: "buffered"}[direct], func(t *testing.T) {
			ctx := t.Context()
			_, dev := testenv.NewDiskLoop(t, testenv.DiskSpec{SlotSize: 8 << 20})
			d, err := slot.Open(ctx, dev, slot.Options{Booted: "A", Direct: direct})
			if err != nil {
				t.Fatal(err)
			}
			if d.PassiveSlot().Device != dev+"p4" {
				t.Fatalf("passive device %q", d.PassiveSlot().Device)
			}
			mnt, unmount := testenv.MountExt4(t, dev+"p4")
			if err := os.WriteFile(mnt+"/file", []byte("mounted data"), 0o644); err != nil {
				t.Fatal(err)
			}
			w, err := d.OpenPassive(ctx)
			if !errors.Is(err, slot.ErrBusy) {
				if err == nil {
					w.Close()
				}
				t.Fatalf("OpenPassive on a mounted partition: %v, want ErrBusy", err)
			}
			unmount()
			w, err = d.OpenPassive(ctx)
			if err != nil {
				t.Fatalf("OpenPassive after umount: %v", err)
			}
			defer w.Close()
			buf := slot.AlignedBuffer(4096)
			copy(buf, pattern(len(buf), 3))
			if _, err := w.WriteAt(buf, 0); err != nil {
				t.Fatal(err)
			}
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
			back := make([]byte, len(buf))
			f, err := os.Open(dev + "p4")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.ReadAt(back, 0); err != nil || !bytes.Equal(back, buf) {
				t.Fatalf("write after umount did not reach the partition (%v)", err)
			}
		})
	}
}
