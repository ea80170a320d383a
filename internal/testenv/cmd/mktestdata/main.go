// Command mktestdata writes the small disk images tests and the demo use.
//
// Without -disk it writes into -dir (make testdata: testdata/generated,
// never committed) sparse GPT images with A/B slots in the Flatcar and the
// simple layout, with 512- and 4096-byte sectors.
//
// With -disk FILE it writes one Flatcar-layout disk there and, with
// -fill-a IMAGE, copies IMAGE into slot A (USR-A), the slot marked booted
// and good, as an installer would (scripts/demo.sh uses this).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/gpt"
)

func main() {
	dir := flag.String("dir", "testdata/generated", "output directory")
	slot := flag.Int64("slot-size", 16<<20, "bytes per A/B slot")
	disk := flag.String("disk", "", "write one Flatcar-layout disk to this file instead")
	fillA := flag.String("fill-a", "", "with -disk: copy this image into slot A")
	flag.Parse()
	var err error
	if *disk != "" {
		err = makeDisk(*disk, *slot, *fillA)
	} else {
		err = run(*dir, *slot)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mktestdata:", err)
		os.Exit(1)
	}
}

func run(dir string, slotSize int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	disks := []struct {
		name string
		spec testenv.DiskSpec
	}{
		{"flatcar.img", testenv.DiskSpec{Layout: testenv.LayoutFlatcar, SlotSize: slotSize}},
		{"flatcar-4k.img", testenv.DiskSpec{Layout: testenv.LayoutFlatcar, SlotSize: slotSize, SectorSize: 4096}},
		{"simple.img", testenv.DiskSpec{Layout: testenv.LayoutSimple, SlotSize: slotSize}},
	}
	for _, d := range disks {
		path := filepath.Join(dir, d.name)
		if err := testenv.CreateDisk(path, d.spec); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		fmt.Println(path)
	}
	return nil
}

func makeDisk(path string, slotSize int64, fillA string) error {
	if err := testenv.CreateDisk(path, testenv.DiskSpec{Layout: testenv.LayoutFlatcar, SlotSize: slotSize}); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if fillA == "" {
		return nil
	}
	d, err := gpt.Open(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	tab, _, err := d.Read()
	if err != nil {
		return err
	}
	idx, err := tab.FindLabel("USR-A")
	if err != nil {
		return err
	}
	e, err := tab.Entry(idx)
	if err != nil {
		return err
	}
	start, size := int64(e.FirstLBA)*int64(d.SectorSize()), int64(e.Sectors())*int64(d.SectorSize())
	src, err := os.Open(fillA)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	if fi.Size() > size {
		return fmt.Errorf("%s (%d bytes) does not fit slot A (%d bytes)", fillA, fi.Size(), size)
	}
	dst, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.NewOffsetWriter(dst, start), src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
