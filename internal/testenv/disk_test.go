package testenv

import (
	"os"
	"syscall"
	"testing"

	"github.com/abupdate/update_engine/pkg/gpt"
)

func TestNewDisk(t *testing.T) {
	tests := []struct {
		name       string
		spec       DiskSpec
		slotLabels [2]string
		wantSize   int64
		wantErr    bool
	}{
		{name: "default flatcar", spec: DiskSpec{}, slotLabels: [2]string{"USR-A", "USR-B"}, wantSize: 16 << 20},
		{name: "simple 4k", spec: DiskSpec{Layout: LayoutSimple, SlotSize: 3 << 20, SectorSize: 4096}, slotLabels: [2]string{"ROOT-A", "ROOT-B"}, wantSize: 3 << 20},
		{name: "rounded slot", spec: DiskSpec{SlotSize: 1}, slotLabels: [2]string{"USR-A", "USR-B"}, wantSize: 1 << 20},
		{name: "bad layout", spec: DiskSpec{Layout: "nope"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir() + "/d.img"
			err := CreateDisk(path, tt.spec)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			d, err := gpt.Open(path, os.O_RDONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			tab, rep, err := d.Read()
			if err != nil || rep.NeedsRepair() {
				t.Fatalf("read: %v %v", rep, err)
			}
			if d.SectorSize() != tt.spec.withDefaults().SectorSize {
				t.Fatalf("sector size %d", d.SectorSize())
			}
			if slots := tab.FindType(gpt.TypeCoreOSUsr); len(slots) != 2 || slots[0] != 3 || slots[1] != 4 {
				t.Fatalf("usr slots at %v", slots)
			}
			for i, label := range tt.slotLabels {
				e := tab.Entries[2+i]
				if e.Name != label || int64(e.Sectors())*int64(d.SectorSize()) != tt.wantSize {
					t.Fatalf("slot %d: %q, %d sectors", i, e.Name, e.Sectors())
				}
			}
			if next, _ := tab.Next(gpt.TypeCoreOSUsr); next != 3 || tab.Entries[2].GUID != GUIDSlotA {
				t.Fatalf("next boot %d", next)
			}
			fi, _ := os.Stat(path)
			if fi.Size() != tt.spec.Size() {
				t.Fatalf("size %d, want %d", fi.Size(), tt.spec.Size())
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Blocks*512 > 1<<20 {
				t.Fatalf("image not sparse: %d blocks allocated", st.Blocks)
			}
		})
	}
}

func TestNewDiskLoop(t *testing.T) {
	for _, ss := range []int{512, 4096} {
		_, dev := NewDiskLoop(t, DiskSpec{Layout: LayoutSimple, SlotSize: 2 << 20, SectorSize: ss})
		d, err := gpt.Open(dev, os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if d.SectorSize() != ss || !d.IsBlockDevice() {
			t.Fatalf("%s: sector size %d, block %v", dev, d.SectorSize(), d.IsBlockDevice())
		}
		if _, _, err := d.Read(); err != nil {
			t.Fatal(err)
		}
		d.Close()
		if _, err := os.Stat(dev + "p3"); err != nil {
			t.Fatalf("partition node: %v", err)
		}
	}
}
