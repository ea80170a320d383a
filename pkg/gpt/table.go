package gpt

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// Table is a GPT as it should be on a disk of Sectors logical sectors: the
// primary header at LBA 1 with its array at EntryLBA, the backup array and
// header at the end. Entries[i] is partition number i+1.
type Table struct {
	SectorSize     int    // logical sector size in bytes: 512 or 4096 (1024, 2048 accepted)
	Sectors        uint64 // disk size in sectors; the backup header is at Sectors-1
	DiskGUID       GUID
	FirstUsableLBA uint64
	LastUsableLBA  uint64
	EntryLBA       uint64 // primary entry array, normally 2
	EntrySize      uint32 // bytes per entry, normally 128
	Entries        []Entry
}

// Report says what Read found wrong; a zero Report means both copies and
// the protective MBR are valid and agree.
type Report struct {
	Primary     error // why the primary copy is unusable (ErrCorrupt), or nil
	Backup      error // why the backup copy is unusable (ErrCorrupt), or nil
	BackupMoved bool  // the backup is valid but not at the last LBA (the disk grew)
	Mismatch    bool  // both copies are valid but differ; the primary wins
	PMBR        error // protective MBR missing or wrong size (ErrCorrupt), or nil
}

// NeedsRepair reports whether writing the table back would change the disk.
func (r *Report) NeedsRepair() bool {
	return r.Primary != nil || r.Backup != nil || r.BackupMoved || r.Mismatch || r.PMBR != nil
}

// String lists the problems, or "ok".
func (r *Report) String() string {
	var s []string
	for _, e := range []error{r.Primary, r.Backup, r.PMBR} {
		if e != nil {
			s = append(s, e.Error())
		}
	}
	if r.BackupMoved {
		s = append(s, "backup GPT is not at the end of the disk")
	}
	if r.Mismatch {
		s = append(s, "primary and backup GPT differ")
	}
	if len(s) == 0 {
		return "ok"
	}
	return strings.Join(s, "; ")
}

func validSectorSize(ss int) bool { return ss == 512 || ss == 1024 || ss == 2048 || ss == 4096 }

// copyOf is one validated GPT copy.
type copyOf struct {
	h     header
	array []byte
}

func readCopy(r io.ReaderAt, at, lastLBA uint64, ss int, which string) (*copyOf, error) {
	sec := make([]byte, ss)
	if _, err := r.ReadAt(sec, int64(at)*int64(ss)); err != nil {
		return nil, fmt.Errorf("%w: %s header at LBA %d: %w", ErrIO, which, at, err)
	}
	h, err := parseHeader(sec, at, lastLBA, ss, which)
	if err != nil {
		return nil, err
	}
	if h.entriesLBA+arraySectors(h.arrayBytes(), ss)-1 > lastLBA {
		return nil, fmt.Errorf("%w: %s entry array at LBA %d is past the end of the disk (last LBA %d)", ErrCorrupt, which, h.entriesLBA, lastLBA)
	}
	array := make([]byte, h.arrayBytes())
	if _, err := r.ReadAt(array, int64(h.entriesLBA)*int64(ss)); err != nil {
		return nil, fmt.Errorf("%w: %s entry array at LBA %d: %w", ErrIO, which, h.entriesLBA, err)
	}
	if got := crc32.ChecksumIEEE(array); got != h.entriesCRC {
		return &copyOf{h: h}, fmt.Errorf("%w: %s entry array at LBA %d: CRC32 %#08x, computed %#08x", ErrCorrupt, which, h.entriesLBA, h.entriesCRC, got)
	}
	return &copyOf{h: h, array: array}, nil
}

// Read reads the GPT of a disk of size bytes from r. sectorSize is the
// logical sector size (see DetectSectorSize). It returns the table as it
// should be written back (a grown disk's backup moved to the end, a corrupt
// copy rebuilt from the other) and a Report of what differs on disk now. It
// fails with ErrNoValidGPT, naming both copies' problems, when neither copy
// is valid, and with ErrIO when r fails.
func Read(r io.ReaderAt, size int64, sectorSize int) (*Table, *Report, error) {
	if !validSectorSize(sectorSize) {
		return nil, nil, fmt.Errorf("%w: sector size %d", ErrInvalid, sectorSize)
	}
	ss := sectorSize
	if size < int64(3*ss) {
		return nil, nil, fmt.Errorf("%w: disk of %d bytes is too small for a GPT with %d-byte sectors", ErrNoValidGPT, size, ss)
	}
	sectors := uint64(size) / uint64(ss)
	rep := &Report{}
	pri, bak, err := readCopies(r, sectors-1, ss, rep)
	if err != nil {
		return nil, nil, err
	}
	t := tableFrom(pri, bak, rep, sectors, ss)
	mbr := make([]byte, mbrSize)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return nil, nil, fmt.Errorf("%w: protective MBR: %w", ErrIO, err)
	}
	rep.PMBR = checkPMBR(mbr, sectors)
	return t, rep, nil
}

// readCopies reads the primary copy and then the backup, and notes in rep
// what is wrong with each, whether the backup has moved and whether the
// two differ. A copy that rep.Primary or rep.Backup calls unusable may be
// nil. It fails with ErrIO when r fails and with ErrNoValidGPT when
// neither copy is valid.
func readCopies(r io.ReaderAt, last uint64, ss int, rep *Report) (pri, bak *copyOf, err error) {
	pri, perr := readCopy(r, 1, last, ss, "primary")
	if errors.Is(perr, ErrIO) {
		return nil, nil, perr
	}
	bak, movedBak, berr := readBackup(r, pri, last, ss)
	if errors.Is(berr, ErrIO) {
		return nil, nil, berr
	}
	if perr != nil && berr != nil {
		return nil, nil, fmt.Errorf("%w: %s; %s", ErrNoValidGPT, bare(perr), bare(berr))
	}
	rep.Primary, rep.Backup = perr, berr
	rep.BackupMoved = movedBak || (perr == nil && pri.h.altLBA != last)
	if perr == nil && berr == nil {
		rep.Mismatch = !sameCopy(&pri.h, &bak.h, rep.BackupMoved) || !bytes.Equal(pri.array, bak.array)
	}
	return pri, bak, nil
}

// readBackup reads the backup copy at the last LBA or, failing that, where
// the primary's header says it is (a grown disk keeps it there; moved is
// then true). Unless r fails (ErrIO), the error is the one about the last
// LBA, and it is nil exactly when a valid backup was found.
func readBackup(r io.ReaderAt, pri *copyOf, last uint64, ss int) (bak *copyOf, moved bool, err error) {
	candidates := []uint64{last}
	if pri != nil && pri.h.altLBA < last && pri.h.altLBA > 1 {
		candidates = append(candidates, pri.h.altLBA)
	}
	for i, at := range candidates {
		c, cerr := readCopy(r, at, last, ss, "backup")
		if errors.Is(cerr, ErrIO) {
			return nil, false, cerr
		}
		if cerr == nil {
			return c, i > 0, nil
		}
		if i == 0 {
			err = cerr
		}
	}
	return nil, false, err
}

// tableFrom builds the table to write back from the valid copy, the
// primary when it is: the geometry of a disk of sectors, the backup at its
// end.
func tableFrom(pri, bak *copyOf, rep *Report, sectors uint64, ss int) *Table {
	base := pri
	if rep.Primary != nil {
		base = bak
	}
	t := &Table{
		SectorSize:     ss,
		Sectors:        sectors,
		DiskGUID:       base.h.diskGUID,
		FirstUsableLBA: base.h.firstUsable,
		LastUsableLBA:  base.h.lastUsable,
		EntryLBA:       2,
		EntrySize:      base.h.entrySize,
	}
	if rep.Primary == nil {
		t.EntryLBA = pri.h.entriesLBA
	}
	n := arraySectors(base.h.arrayBytes(), ss)
	if rep.BackupMoved { // as sgdisk -e: backup to the end, usable space up to it
		t.LastUsableLBA = sectors - 1 - n - 1
	}
	if t.EntryLBA+n > t.FirstUsableLBA {
		t.EntryLBA = 2 // primary rebuilt from a backup with a wider array
	}
	for i := range base.h.numEntries {
		off := int(i) * int(base.h.entrySize)
		t.Entries = append(t.Entries, parseEntry(base.array[off:off+int(base.h.entrySize)]))
	}
	return t
}

// bare is err's text without the package prefixes.
func bare(err error) string {
	s := strings.TrimPrefix(err.Error(), "gpt: ")
	return strings.TrimPrefix(strings.TrimPrefix(s, "corrupt: "), "I/O error: ")
}

func sameCopy(p, b *header, moved bool) bool {
	return p.firstUsable == b.firstUsable && (moved || p.lastUsable == b.lastUsable) &&
		p.diskGUID == b.diskGUID && p.numEntries == b.numEntries && p.entrySize == b.entrySize &&
		p.entriesCRC == b.entriesCRC
}

// arraySectors is the number of sectors of one entry array.
func (t *Table) arraySectors() uint64 {
	return arraySectors(uint64(len(t.Entries))*uint64(t.EntrySize), t.SectorSize)
}

// Check reports the first reason t cannot be written: geometry outside the
// disk, overlapping arrays, partitions outside the usable range or
// overlapping each other, names too long.
func (t *Table) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if !validSectorSize(t.SectorSize) {
		return bad("sector size %d", t.SectorSize)
	}
	if t.EntrySize < minEntrySize || t.EntrySize > maxEntrySize || t.EntrySize%minEntrySize != 0 {
		return bad("entry size %d", t.EntrySize)
	}
	if len(t.Entries) == 0 || uint64(len(t.Entries))*uint64(t.EntrySize) > maxArrayBytes {
		return bad("%d entries", len(t.Entries))
	}
	n := t.arraySectors()
	if t.Sectors < 2*n+3 {
		return bad("disk of %d sectors cannot hold two entry arrays of %d sectors", t.Sectors, n)
	}
	last := t.Sectors - 1
	if t.EntryLBA < 2 || t.EntryLBA+n > t.FirstUsableLBA || t.FirstUsableLBA > t.LastUsableLBA || t.LastUsableLBA >= last-n {
		return bad("layout: primary array LBA %d (+%d), usable %d..%d, backup array LBA %d",
			t.EntryLBA, n, t.FirstUsableLBA, t.LastUsableLBA, last-n)
	}
	type span struct {
		i           int
		first, last uint64
	}
	var used []span
	for i := range t.Entries {
		e := &t.Entries[i]
		if !e.IsUsed() {
			continue
		}
		if nameLen(e.Name) > nameUnits {
			return bad("partition %d: name %q longer than %d UTF-16 units", i+1, e.Name, nameUnits)
		}
		if e.FirstLBA > e.LastLBA || e.FirstLBA < t.FirstUsableLBA || e.LastLBA > t.LastUsableLBA {
			return bad("partition %d: LBA %d..%d outside usable %d..%d", i+1, e.FirstLBA, e.LastLBA, t.FirstUsableLBA, t.LastUsableLBA)
		}
		for _, s := range used {
			if e.FirstLBA <= s.last && s.first <= e.LastLBA {
				return bad("partitions %d and %d overlap", s.i+1, i+1)
			}
		}
		used = append(used, span{i, e.FirstLBA, e.LastLBA})
	}
	return nil
}

// marshalArray encodes the entry array, padded to whole sectors.
func (t *Table) marshalArray() ([]byte, uint32, error) {
	es := int(t.EntrySize)
	b := make([]byte, int(t.arraySectors())*t.SectorSize)
	for i := range t.Entries {
		if err := t.Entries[i].marshal(b[i*es : (i+1)*es]); err != nil {
			return nil, 0, fmt.Errorf("partition %d: %w", i+1, err)
		}
	}
	return b, crc32.ChecksumIEEE(b[:len(t.Entries)*es]), nil
}

// Write writes both GPT copies to w in the crash-safe order: backup array,
// backup header, Sync, primary array, primary header, Sync (Sync when w has
// a Sync() error method, as *os.File does). It does not touch the
// protective MBR (see WritePMBR). It checks t first and fails with
// ErrInvalid without writing anything.
func (t *Table) Write(w io.WriterAt) error {
	if err := t.Check(); err != nil {
		return err
	}
	array, crc, err := t.marshalArray()
	if err != nil {
		return err
	}
	ss, last, n := int64(t.SectorSize), t.Sectors-1, t.arraySectors()
	h := header{
		firstUsable: t.FirstUsableLBA, lastUsable: t.LastUsableLBA, diskGUID: t.DiskGUID,
		numEntries: uint32(len(t.Entries)), entrySize: t.EntrySize, entriesCRC: crc,
	}
	bak, pri := h, h
	bak.myLBA, bak.altLBA, bak.entriesLBA = last, 1, last-n
	pri.myLBA, pri.altLBA, pri.entriesLBA = 1, last, t.EntryLBA
	steps := []struct {
		what string
		off  int64
		b    []byte
	}{
		{"backup entry array", int64(bak.entriesLBA) * ss, array},
		{"backup header", int64(last) * ss, bak.marshal(t.SectorSize)},
		{"", 0, nil}, // sync
		{"primary entry array", int64(pri.entriesLBA) * ss, array},
		{"primary header", ss, pri.marshal(t.SectorSize)},
		{"", 0, nil},
	}
	for _, s := range steps {
		if s.b == nil {
			if err := syncIfSyncer(w); err != nil {
				return err
			}
			continue
		}
		if _, err := w.WriteAt(s.b, s.off); err != nil {
			return fmt.Errorf("%w: writing %s at byte %d: %w", ErrIO, s.what, s.off, err)
		}
	}
	return nil
}

func syncIfSyncer(w io.WriterAt) error {
	if s, ok := w.(interface{ Sync() error }); ok {
		if err := s.Sync(); err != nil {
			return fmt.Errorf("%w: sync: %w", ErrIO, err)
		}
	}
	return nil
}

// WritePMBR makes sector 0 of rw a protective MBR for t's disk when it is
// not one already (missing, or sized for a smaller disk), keeping the boot
// code and disk signature. It reports whether it wrote.
func (t *Table) WritePMBR(rw interface {
	io.ReaderAt
	io.WriterAt
}) (bool, error) {
	old := make([]byte, mbrSize)
	if _, err := rw.ReadAt(old, 0); err != nil {
		return false, fmt.Errorf("%w: reading MBR: %w", ErrIO, err)
	}
	if checkPMBR(old, t.Sectors) == nil {
		return false, nil
	}
	if _, err := rw.WriteAt(fixPMBR(old, t.Sectors), 0); err != nil {
		return false, fmt.Errorf("%w: writing protective MBR: %w", ErrIO, err)
	}
	return true, nil
}
