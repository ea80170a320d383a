package gpt

import "fmt"

// Partition describes one partition for New.
type Partition struct {
	Index      int    // partition number; 0 = the one after the previous partition's
	Name       string // label, at most 36 UTF-16 units
	Type       GUID
	GUID       GUID   // unique GUID; zero = random
	Size       int64  // bytes, rounded up to whole sectors; 0 = the rest of the disk
	Attributes uint64 // including the A/B bits
}

// Align is where New starts partitions: 1 MiB, as sgdisk and parted do.
const Align = 1 << 20

// New lays out a fresh table with 128 entries for a disk of diskSize bytes
// and the given logical sector size. Partitions follow each other in the
// order given, each starting on a 1 MiB boundary. The result is only in
// memory: write it with Disk.Create (or WritePMBR and Write).
func New(diskSize int64, sectorSize int, parts []Partition) (*Table, error) {
	if !validSectorSize(sectorSize) {
		return nil, fmt.Errorf("%w: sector size %d", ErrInvalid, sectorSize)
	}
	ss := uint64(sectorSize)
	t := &Table{
		SectorSize: sectorSize,
		Sectors:    uint64(diskSize) / ss,
		DiskGUID:   NewGUID(),
		EntryLBA:   2,
		EntrySize:  minEntrySize,
		Entries:    make([]Entry, defaultEntries),
	}
	n := t.arraySectors()
	if t.Sectors < 2*n+4 {
		return nil, fmt.Errorf("%w: disk of %d bytes too small", ErrInvalid, diskSize)
	}
	t.FirstUsableLBA = 2 + n
	t.LastUsableLBA = t.Sectors - 2 - n
	align := uint64(Align) / ss
	next, index := t.FirstUsableLBA, 0
	for _, p := range parts {
		index++
		if p.Index != 0 {
			index = p.Index
		}
		if index < 1 || index > len(t.Entries) {
			return nil, fmt.Errorf("%w: partition %q: index %d not in 1..%d", ErrInvalid, p.Name, index, len(t.Entries))
		}
		if t.Entries[index-1].IsUsed() {
			return nil, fmt.Errorf("%w: partition %q: index %d used twice", ErrInvalid, p.Name, index)
		}
		if p.Type.IsZero() {
			return nil, fmt.Errorf("%w: partition %q: zero type GUID", ErrInvalid, p.Name)
		}
		first := (next + align - 1) / align * align
		last := t.LastUsableLBA
		if p.Size > 0 {
			last = first + (uint64(p.Size)+ss-1)/ss - 1
		}
		if first > t.LastUsableLBA || last > t.LastUsableLBA {
			return nil, fmt.Errorf("%w: partition %q (%d bytes) does not fit on a %d-byte disk", ErrInvalid, p.Name, p.Size, diskSize)
		}
		g := p.GUID
		if g.IsZero() {
			g = NewGUID()
		}
		t.Entries[index-1] = Entry{Type: p.Type, GUID: g, FirstLBA: first, LastLBA: last, Attributes: p.Attributes, Name: p.Name}
		next = last + 1
	}
	if err := t.Check(); err != nil {
		return nil, err
	}
	return t, nil
}
