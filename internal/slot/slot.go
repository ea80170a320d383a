package slot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/abupdate/update_engine/pkg/gpt"
)

// Sentinel errors; the comment names the update_engine code (SPEC.md
// section 7) internal/engine maps each to.
var (
	// ErrNoSlots: the disk has no pair of usr-type partitions. Code 7
	// (InstallDeviceOpenError).
	ErrNoSlots = errors.New("slot: no A/B slot pair")
	// ErrBootedUnknown: neither the options nor the kernel command line name
	// a slot of this disk. Code 7.
	ErrBootedUnknown = errors.New("slot: booted slot unknown")
	// ErrOutOfRange: a write outside the passive partition; nothing was
	// written. Code 14 (DownloadWriteError).
	ErrOutOfRange = errors.New("slot: write outside the partition")
	// ErrBusy: the passive slot's partition is mounted or held open
	// exclusively by another program; nothing was written. Code 7.
	ErrBusy = errors.New("slot: passive partition is busy (mounted, or held by another program)")
	// ErrNotBootable: the passive slot holds no image known to boot (for
	// rollback). Code 1 (Error).
	ErrNotBootable = errors.New("slot: passive slot not bootable")
)

// Slot is one half of the A/B pair.
type Slot struct {
	Name   string   // "A" or "B"
	Index  int      // GPT partition number
	Label  string   // GPT name, e.g. USR-A
	Type   gpt.GUID // partition type
	GUID   gpt.GUID // unique partition GUID (PARTUUID)
	Start  int64    // byte offset on the disk
	Size   int64    // bytes
	Device string   // partition node (/dev/loop0p3) when used, else ""
}

// String is e.g. "B (USR-B, partition 4)".
func (s Slot) String() string { return fmt.Sprintf("%s (%s, partition %d)", s.Name, s.Label, s.Index) }

// Options configures Open. The zero value reads /proc/cmdline and writes
// through the page cache.
type Options struct {
	// Booted names the booted slot: "A" or "B", a label, a partition
	// number, PARTUUID=<guid> or a bare GUID, or a /dev path. Empty: from
	// Cmdline.
	Booted string
	// Cmdline is the kernel command line; empty: /proc/cmdline.
	Cmdline string
	// Direct opens the passive slot O_DIRECT (needed for cgroup v1 I/O
	// throttling) where the file system allows it; see Writer.Direct.
	Direct bool
	// ByOffset addresses the slots by offset on the whole disk even when
	// partition nodes exist.
	ByOffset bool
	// SectorSize overrides the logical sector size (0: detect).
	SectorSize int
}

// Disk is the A/B pair of one disk. Its methods are safe for concurrent
// use; the slot geometry is fixed at Open.
type Disk struct {
	path       string
	sectorSize int
	direct     bool
	slots      [2]Slot
	booted     int // 0 or 1, index into slots

	mu sync.Mutex // serializes GPT read-modify-write cycles
}

// Open reads the GPT of path (read-only; nothing is repaired yet) and
// finds the slot pair and the booted slot.
func Open(ctx context.Context, path string, opts Options) (*Disk, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g, err := gpt.Open(path, os.O_RDONLY, opts.SectorSize)
	if err != nil {
		return nil, err
	}
	defer g.Close()
	tab, _, err := g.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	slots, err := pair(tab)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if g.IsBlockDevice() && !opts.ByOffset {
		nodes := partitionNodes(path)
		for i := range slots {
			if n, ok := nodes[slots[i].Index]; ok && n.start == slots[i].Start && n.size == slots[i].Size {
				slots[i].Device = n.dev
			}
		}
	}
	d := &Disk{path: path, sectorSize: g.SectorSize(), direct: opts.Direct, slots: slots}
	if opts.Booted != "" {
		d.booted, err = d.match(opts.Booted)
		if err != nil {
			return nil, fmt.Errorf("%w: option %q: %w", ErrBootedUnknown, opts.Booted, err)
		}
		return d, nil
	}
	cmdline := opts.Cmdline
	if cmdline == "" {
		b, err := os.ReadFile("/proc/cmdline")
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBootedUnknown, err)
		}
		cmdline = string(b)
	}
	if d.booted, err = d.fromCmdline(cmdline); err != nil {
		return nil, err
	}
	return d, nil
}

// pair finds the two usr-type partitions.
func pair(tab *gpt.Table) ([2]Slot, error) {
	var s [2]Slot
	idx := tab.FindType(gpt.TypeCoreOSUsr)
	if len(idx) != 2 {
		return s, fmt.Errorf("%w: %d partitions of type %v, want 2", ErrNoSlots, len(idx), gpt.TypeCoreOSUsr)
	}
	for i, n := range idx {
		e := &tab.Entries[n-1]
		ss := int64(tab.SectorSize)
		s[i] = Slot{Name: string(rune('A' + i)), Index: n, Label: e.Name, Type: e.Type, GUID: e.GUID,
			Start: int64(e.FirstLBA) * ss, Size: int64(e.Sectors()) * ss}
	}
	return s, nil
}

// Path is the disk's path as given to Open.
func (d *Disk) Path() string { return d.path }

// Slots returns the pair, A first.
func (d *Disk) Slots() [2]Slot { return d.slots }

// BootedSlot is the slot the running system booted from.
func (d *Disk) BootedSlot() Slot { return d.slots[d.booted] }

// PassiveSlot is the other slot, the one updates are written to.
func (d *Disk) PassiveSlot() Slot { return d.slots[1-d.booted] }

// Booted is the booted slot's name, "A" or "B".
func (d *Disk) Booted() string { return d.slots[d.booted].Name }

// Passive is the passive slot's name, "A" or "B".
func (d *Disk) Passive() string { return d.slots[1-d.booted].Name }

// PassiveDevice is a path for the passive slot to hand to a post-install
// program: its partition node, else the disk path (an image file).
func (d *Disk) PassiveDevice() string {
	if s := d.PassiveSlot(); s.Device != "" {
		return s.Device
	}
	return d.path
}

// Active opens the booted slot read-only. The io.ReaderAt is an
// *io.SectionReader bounded to the slot (its Size is the slot size); close
// the io.Closer when done.
func (d *Disk) Active() (io.ReaderAt, io.Closer, error) {
	return d.openReader(d.BootedSlot())
}

// OpenPassiveReader opens the passive slot read-only, e.g. to hash what
// was written.
func (d *Disk) OpenPassiveReader() (*io.SectionReader, io.Closer, error) {
	return d.openReader(d.PassiveSlot())
}

func (d *Disk) openReader(s Slot) (*io.SectionReader, io.Closer, error) {
	name, off := d.path, s.Start
	if s.Device != "" {
		name, off = s.Device, 0
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("slot %s: %w", s, err)
	}
	return io.NewSectionReader(f, off, s.Size), f, nil
}

// match resolves a slot name in the forms Options.Booted accepts.
func (d *Disk) match(v string) (int, error) {
	for i, s := range d.slots {
		switch {
		case strings.EqualFold(v, s.Name), v == s.Label, v == fmt.Sprint(s.Index):
			return i, nil
		}
	}
	if i, ok := d.matchDevice(v); ok {
		return i, nil
	}
	return 0, fmt.Errorf("names neither %s nor %s", d.slots[0], d.slots[1])
}

func (d *Disk) String() string { return d.path }
