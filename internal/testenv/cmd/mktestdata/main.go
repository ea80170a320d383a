// Command mktestdata writes the small disk images tests and the demo use
// into -dir (make testdata: testdata/generated, never committed): sparse
// GPT images with A/B slots in the Flatcar and the simple layout, with
// 512- and 4096-byte sectors.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/abupdate/update_engine/internal/testenv"
)

func main() {
	dir := flag.String("dir", "testdata/generated", "output directory")
	slot := flag.Int64("slot-size", 16<<20, "bytes per A/B slot")
	flag.Parse()
	if err := run(*dir, *slot); err != nil {
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
