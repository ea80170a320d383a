package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/abupdate/update_engine/pkg/gpt"
)

// Layout names an A/B disk layout.
type Layout string

const (
	// LayoutFlatcar is SPEC.md section 5: 1 EFI-SYSTEM, 2 BIOS-BOOT, 3 USR-A,
	// 4 USR-B, 6 OEM, 7 OEM-CONFIG, 9 ROOT, with Flatcar's USR partition GUIDs.
	LayoutFlatcar Layout = "flatcar"
	// LayoutSimple is 1 EFI-SYSTEM, 2 BOOT-B, 3 ROOT-A, 4 ROOT-B, 5 OEM,
	// 6 STATE; ROOT-A/B carry the CoreOS usr type.
	LayoutSimple Layout = "simple"
)

// Fixed unique GUIDs of the slots, so tests can build /proc/cmdline lines.
var (
	GUIDSlotA = gpt.MustParseGUID("7130c94a-213a-4e5a-8e26-6cce9662f132") // Flatcar USR-A
	GUIDSlotB = gpt.MustParseGUID("e03dd35c-7c2d-4a47-b3fe-27f15780a57c") // Flatcar USR-B
)

// DiskSpec describes a test disk. The zero value is a Flatcar layout with
// 16 MiB slots and 512-byte sectors.
type DiskSpec struct {
	Layout     Layout
	SlotSize   int64 // bytes per A/B slot, rounded up to 1 MiB; 0 = 16 MiB
	SectorSize int   // 512 (default) or 4096
}

func (s DiskSpec) withDefaults() DiskSpec {
	if s.Layout == "" {
		s.Layout = LayoutFlatcar
	}
	if s.SlotSize == 0 {
		s.SlotSize = 16 << 20
	}
	s.SlotSize = (s.SlotSize + gpt.Align - 1) / gpt.Align * gpt.Align
	if s.SectorSize == 0 {
		s.SectorSize = 512
	}
	return s
}

// Partitions returns the layout's partitions. Slot A starts good and
// preferred (successful=1, priority=1, tries=0) and slot B empty (all 0),
// as a freshly built Flatcar image has them.
func (s DiskSpec) Partitions() ([]gpt.Partition, error) {
	s = s.withDefaults()
	const mib = 1 << 20
	good := uint64(1)<<gpt.SuccessfulShift | 1<<gpt.PriorityShift
	switch s.Layout {
	case LayoutFlatcar:
		return []gpt.Partition{
			{Index: 1, Name: "EFI-SYSTEM", Type: gpt.TypeEFISystem, Size: 2 * mib},
			{Index: 2, Name: "BIOS-BOOT", Type: gpt.TypeBIOSBoot, Size: mib},
			{Index: 3, Name: "USR-A", Type: gpt.TypeCoreOSUsr, GUID: GUIDSlotA, Size: s.SlotSize, Attributes: good},
			{Index: 4, Name: "USR-B", Type: gpt.TypeCoreOSUsr, GUID: GUIDSlotB, Size: s.SlotSize},
			{Index: 6, Name: "OEM", Type: gpt.TypeLinuxData, Size: 2 * mib},
			{Index: 7, Name: "OEM-CONFIG", Type: gpt.TypeCoreOSReserved, Size: mib},
			{Index: 9, Name: "ROOT", Type: gpt.TypeCoreOSResize, Size: 4 * mib},
		}, nil
	case LayoutSimple:
		return []gpt.Partition{
			{Index: 1, Name: "EFI-SYSTEM", Type: gpt.TypeEFISystem, Size: 2 * mib},
			{Index: 2, Name: "BOOT-B", Type: gpt.TypeCoreOSReserved, Size: mib},
			{Index: 3, Name: "ROOT-A", Type: gpt.TypeCoreOSUsr, GUID: GUIDSlotA, Size: s.SlotSize, Attributes: good},
			{Index: 4, Name: "ROOT-B", Type: gpt.TypeCoreOSUsr, GUID: GUIDSlotB, Size: s.SlotSize},
			{Index: 5, Name: "OEM", Type: gpt.TypeLinuxData, Size: 2 * mib},
			{Index: 6, Name: "STATE", Type: gpt.TypeCoreOSResize, Size: 4 * mib},
		}, nil
	}
	return nil, fmt.Errorf("testenv: unknown layout %q", s.Layout)
}

// Size is the disk size in bytes: the partitions, 1 MiB before them and
// 1 MiB after for the backup GPT.
func (s DiskSpec) Size() int64 {
	parts, _ := s.Partitions()
	size := int64(2 << 20)
	for _, p := range parts {
		size += p.Size
	}
	return size
}

// CreateDisk writes a sparse image file at path with spec's layout. It
// does not need a testing.TB, so cmd/mktestdata and the demo use it too.
func CreateDisk(path string, spec DiskSpec) error {
	spec = spec.withDefaults()
	parts, err := spec.Partitions()
	if err != nil {
		return err
	}
	tab, err := gpt.New(spec.Size(), spec.SectorSize, parts)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(path, spec.Size()); err != nil {
		return err
	}
	d, err := gpt.Open(path, os.O_RDWR, spec.SectorSize)
	if err != nil {
		return err
	}
	if err := d.Create(tab); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

// NewDisk creates a disk image per spec in t.TempDir() and returns its path.
func NewDisk(t testing.TB, spec DiskSpec) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), string(spec.withDefaults().Layout)+".img")
	if err := CreateDisk(path, spec); err != nil {
		t.Fatal(err)
	}
	return path
}

// NewDiskLoop creates a disk image per spec and attaches it as a loop
// device with spec's logical sector size and partition nodes
// (/dev/loopNpM). It returns the image and the device; the device is
// detached in t.Cleanup. It skips t unless root.
func NewDiskLoop(t testing.TB, spec DiskSpec) (img, dev string) {
	t.Helper()
	RequireRoot(t)
	img = NewDisk(t, spec)
	return img, LoopDeviceSectorSize(t, img, spec.withDefaults().SectorSize)
}

// LoopDeviceSectorSize is LoopDevice with a logical sector size (512 or
// 4096, `losetup --sector-size`).
func LoopDeviceSectorSize(t testing.TB, img string, sectorSize int) string {
	t.Helper()
	if sectorSize == 0 || sectorSize == 512 {
		return LoopDevice(t, img)
	}
	return attachLoop(t, img, "--sector-size", strconv.Itoa(sectorSize))
}
