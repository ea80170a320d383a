package gpt

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"unsafe"
)

// ReadWriterAt is a disk that can be read and written by offset.
type ReadWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

// DetectSectorSize guesses the logical sector size of an image: the size
// at which an "EFI PART" signature sits at LBA 1 (or, with the primary
// destroyed, at the last LBA); 512 when none does.
func DetectSectorSize(r io.ReaderAt, size int64) int {
	sig := make([]byte, len(signature))
	for _, ss := range []int64{512, 4096} {
		if _, err := r.ReadAt(sig, ss); err == nil && string(sig) == signature {
			return int(ss)
		}
	}
	for _, ss := range []int64{512, 4096} {
		if size >= 3*ss && size%ss == 0 {
			if _, err := r.ReadAt(sig, size-ss); err == nil && string(sig) == signature {
				return int(ss)
			}
		}
	}
	return 512
}

// Update reads the GPT of rw (size bytes, logical sectorSize), repairs what
// the Report shows wrong, then, when fn is not nil, applies fn to the table
// and writes it. Every GPT write goes through Table.Write, so a crash at
// any point leaves a valid copy (see the package doc). The Report is the one of
// the initial read.
func Update(rw ReadWriterAt, size int64, sectorSize int, fn func(*Table) error) (*Report, error) {
	t, rep, err := Read(rw, size, sectorSize)
	if err != nil {
		return nil, err
	}
	if rep.NeedsRepair() {
		// Repair first with unchanged content: the good copy is rewritten
		// with the bytes it already holds, so tearing it is harmless.
		if _, err := t.WritePMBR(rw); err != nil {
			return rep, err
		}
		if err := t.Write(rw); err != nil {
			return rep, fmt.Errorf("repairing GPT (%v): %w", rep, err)
		}
	}
	if fn == nil {
		return rep, nil
	}
	if err := fn(t); err != nil {
		return rep, err
	}
	return rep, t.Write(rw)
}

// Disk is an open image file or block device holding a GPT.
type Disk struct {
	f     *os.File
	size  int64
	ss    int
	block bool
}

// Open opens path (an image file or a block device) with flag (os.O_RDONLY
// or os.O_RDWR). sectorSize 0 means: BLKSSZGET for a block device,
// DetectSectorSize for a file.
func Open(path string, flag int, sectorSize int) (*Disk, error) {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIO, err)
	}
	d, err := newDisk(f, sectorSize)
	if err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

func newDisk(f *os.File, ss int) (*Disk, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIO, err)
	}
	d := &Disk{f: f, block: fi.Mode()&os.ModeDevice != 0}
	if d.size, err = f.Seek(0, io.SeekEnd); err != nil {
		return nil, fmt.Errorf("%w: size of %s: %w", ErrIO, f.Name(), err)
	}
	switch {
	case ss != 0:
		d.ss = ss
	case d.block:
		if d.ss, err = blockSectorSize(f); err != nil {
			return nil, err
		}
	default:
		d.ss = DetectSectorSize(f, d.size)
	}
	if !validSectorSize(d.ss) {
		return nil, fmt.Errorf("%w: sector size %d", ErrInvalid, d.ss)
	}
	return d, nil
}

// blkSSZGet is BLKSSZGET, _IO(0x12, 104): the logical sector size.
const blkSSZGet = 0x1268

func blockSectorSize(f *os.File) (int, error) {
	var ss int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), blkSSZGet, uintptr(unsafe.Pointer(&ss))); e != 0 {
		return 0, fmt.Errorf("%w: BLKSSZGET on %s: %w", ErrIO, f.Name(), e)
	}
	return int(ss), nil
}

// Path is the name the disk was opened with.
func (d *Disk) Path() string { return d.f.Name() }

// Size is the disk size in bytes.
func (d *Disk) Size() int64 { return d.size }

// SectorSize is the logical sector size in bytes.
func (d *Disk) SectorSize() int { return d.ss }

// IsBlockDevice reports whether the disk is a block device, not a file.
func (d *Disk) IsBlockDevice() bool { return d.block }

// Close closes the disk.
func (d *Disk) Close() error { return d.f.Close() }

// Read reads and validates the GPT without writing anything.
func (d *Disk) Read() (*Table, *Report, error) { return Read(d.f, d.size, d.ss) }

// Update repairs the GPT if needed and applies fn (may be nil), as the
// package-level Update does; Table.Write syncs the file after each copy.
// The disk must be open O_RDWR.
func (d *Disk) Update(fn func(*Table) error) (*Report, error) {
	return Update(d.f, d.size, d.ss, fn)
}

// Create writes t, which must fit this disk, as the disk's new GPT, with a
// protective MBR (keeping any boot code).
func (d *Disk) Create(t *Table) error {
	if t.SectorSize != d.ss || t.Sectors != uint64(d.size)/uint64(d.ss) {
		return fmt.Errorf("%w: table is for %d sectors of %d bytes, disk has %d of %d",
			ErrInvalid, t.Sectors, t.SectorSize, d.size/int64(d.ss), d.ss)
	}
	if err := t.Check(); err != nil {
		return err
	}
	if _, err := t.WritePMBR(d.f); err != nil {
		return err
	}
	return t.Write(d.f)
}
