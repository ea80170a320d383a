package gpt_test

import (
	"os"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/gpt"
)

// TestLoopDevice: round trip through a real block device (losetup -P) with
// 512- and 4096-byte logical sectors; the sector size comes from
// BLKSSZGET, and sgdisk and cgpt, reading the same device, agree.
func TestLoopDevice(t *testing.T) {
	testenv.RequireTool(t, "sgdisk", "cgpt")
	for _, ss := range []int{512, 4096} {
		t.Run(map[int]string{512: "512", 4096: "4096"}[ss], func(t *testing.T) {
			_, dev := testenv.NewDiskLoop(t, testenv.DiskSpec{SlotSize: 2 << 20, SectorSize: ss})
			d, err := gpt.Open(dev, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if !d.IsBlockDevice() || d.SectorSize() != ss {
				t.Fatalf("block %v, sector size %d", d.IsBlockDevice(), d.SectorSize())
			}
			if _, err := d.Update(func(t *gpt.Table) error { return t.MarkForTrial(4) }); err != nil {
				t.Fatal(err)
			}
			tab, rep, err := d.Read()
			if err != nil || rep.NeedsRepair() {
				t.Fatalf("%v %v", rep, err)
			}
			if e := tab.Entries[3]; e.Priority() != 2 || e.Tries() != 1 || e.Successful() {
				t.Fatalf("USR-B after trial: %#x", e.Attributes)
			}
			requireSgdiskClean(t, dev)
			requireCgptAgrees(t, dev, tab) // cgpt takes the sector size from the device
			// Damage the primary through the device; Update repairs it.
			if _, err := d.Update(nil); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(dev, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(make([]byte, ss), int64(ss)); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if _, _, err := d.Read(); err != nil {
				t.Fatal(err)
			}
			rep, err = d.Update(nil)
			if err != nil || rep.Primary == nil {
				t.Fatalf("repair: %v %v", rep, err)
			}
			requireSgdiskClean(t, dev)
		})
	}
}
