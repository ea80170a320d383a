package slot_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/testenv"
)

// The engine's view of one update: find the slots, make the passive one
// unbootable, write it, flip to it, and after the reboot mark it good.
func Example() {
	dir, _ := os.MkdirTemp("", "slot-example")
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "disk.img")
	if err := testenv.CreateDisk(img, testenv.DiskSpec{SlotSize: 1 << 20}); err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background() // main's context in a real program

	d, err := slot.Open(ctx, img, slot.Options{Cmdline: "mount.usr=/dev/mapper/usr verity.usr=PARTUUID=7130c94a-213a-4e5a-8e26-6cce9662f132"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("booted", d.BootedSlot(), "passive", d.PassiveSlot())

	_ = d.MarkPassiveUnbootable(ctx)
	src, closer, _ := d.Active() // io.ReaderAt only: the booted slot cannot be written
	_ = src
	closer.Close()
	w, _ := d.OpenPassive(ctx)
	_, err = w.WriteAt(make([]byte, 4096), w.Size()) // outside the slot
	fmt.Println(err)
	_, _ = w.WriteAt([]byte("new image"), 0)
	_ = w.Sync()
	_ = w.Close()
	_ = d.MarkPassiveForTrial(ctx)
	next, _ := d.NextBoot(ctx)
	fmt.Println("next boot", next)

	// The reboot, simulated: GRUB spends B's try; B's userspace marks it good.
	booted, _ := d.SimulateBoot(ctx)
	d, _ = slot.Open(ctx, img, slot.Options{Booted: booted})
	_ = d.MarkBootedGood(ctx)

	infos, n, _ := slot.List(img)
	_ = slot.WriteTable(os.Stdout, infos, n)
	// Output:
	// booted A (USR-A, partition 3) passive B (USR-B, partition 4)
	// slot: write outside the partition: 4096 bytes at 1048576, slot B (USR-B, partition 4) is 1048576 bytes
	// next boot B
	// SLOT  INDEX  LABEL  PRIORITY  TRIES  SUCCESSFUL  NEXT  PARTUUID                              TYPE
	// A     3      USR-A  1         0      1           no    7130c94a-213a-4e5a-8e26-6cce9662f132  5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6
	// B     4      USR-B  2         0      1           yes   e03dd35c-7c2d-4a47-b3fe-27f15780a57c  5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6
}
