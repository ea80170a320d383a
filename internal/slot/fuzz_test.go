package slot_test

import (
	"errors"
	"testing"

	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/testenv"
)

// FuzzCmdline: any kernel command line either names a slot or fails with
// ErrBootedUnknown; never a panic, never the wrong error.
func FuzzCmdline(f *testing.F) {
	img := testenv.NewDisk(f, testenv.DiskSpec{SlotSize: 1 << 20})
	for _, s := range []string{
		"usr=PARTUUID=" + guidA,
		"mount.usr=/dev/mapper/usr verity.usr=PARTUUID=" + guidB,
		"root=/dev/sda3 usr= mount.usr=PARTLABEL= verity.usr=/dev/disk/by-partuuid/",
		`usr="PARTUUID=` + guidB,
		"a=b=c -- usr=PARTUUID=" + guidA,
		"=\x00 root=PARTUUID={" + guidA + "}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cmdline string) {
		if cmdline == "" {
			return // empty means /proc/cmdline
		}
		d, err := slot.Open(t.Context(), img, slot.Options{Cmdline: cmdline})
		if err != nil {
			if !errors.Is(err, slot.ErrBootedUnknown) {
				t.Fatalf("%q: %v", cmdline, err)
			}
			return
		}
		if b := d.Booted(); b != "A" && b != "B" {
			t.Fatalf("%q: booted %q", cmdline, b)
		}
	})
}
