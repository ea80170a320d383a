package slot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"unsafe"
)

// DirectAlign is the alignment O_DIRECT needs of offsets, lengths and
// buffer addresses when Writer.Direct is true.
const DirectAlign = 4096

// Writer writes the passive slot and nothing else: every write must fall
// inside [0, Size). It also reads the slot back (ReadAt), so what was
// written can be verified on the device.
type Writer struct {
	f      *os.File
	base   int64 // offset of the slot in f
	size   int64
	direct bool
	slot   Slot
}

// OpenPassive opens the passive slot for writing. With Options.Direct it
// uses O_DIRECT when the file system supports it (not e.g. on an old
// tmpfs) and the slot is 4096-aligned; Writer.Direct says which it got.
// A partition node is opened O_EXCL: while a file system on it is mounted
// (or another program holds it exclusively) OpenPassive fails with
// ErrBusy. Slots addressed by offset on a whole disk are not checked so:
// the mounted active slot keeps the whole disk busy.
func (d *Disk) OpenPassive(ctx context.Context) (*Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := d.PassiveSlot()
	name, base, excl := d.path, s.Start, 0
	if s.Device != "" {
		name, base, excl = s.Device, 0, os.O_EXCL
	}
	w := &Writer{base: base, size: s.Size, slot: s}
	if d.direct && base%DirectAlign == 0 && s.Size%DirectAlign == 0 && s.Size > 0 {
		f, err := openFile(name, os.O_RDWR|excl|syscall.O_DIRECT, 0)
		if errors.Is(err, syscall.EBUSY) {
			return nil, fmt.Errorf("%w: slot %s (%s)", ErrBusy, s, name)
		}
		if err == nil {
			if probeDirect(f, base) == nil {
				w.f, w.direct = f, true
			} else {
				f.Close()
			}
		}
	}
	if w.f == nil {
		f, err := os.OpenFile(name, os.O_RDWR|excl, 0)
		if errors.Is(err, syscall.EBUSY) {
			return nil, fmt.Errorf("%w: slot %s (%s)", ErrBusy, s, name)
		}
		if err != nil {
			return nil, fmt.Errorf("slot %s: %w", s, err)
		}
		w.f = f
	}
	return w, nil
}

// openFile is os.OpenFile; a test replaces it to play a file system
// without O_DIRECT.
var openFile = os.OpenFile

// probeDirect reads one aligned block: some file systems accept O_DIRECT
// at open and refuse it at the first I/O.
func probeDirect(f *os.File, off int64) error {
	_, err := f.ReadAt(AlignedBuffer(DirectAlign), off)
	if errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// AlignedBuffer returns n bytes starting on a DirectAlign boundary, usable
// for O_DIRECT I/O.
func AlignedBuffer(n int) []byte {
	b := make([]byte, n+DirectAlign)
	off := (DirectAlign - int(uintptr(unsafe.Pointer(&b[0]))%DirectAlign)) % DirectAlign
	return b[off : off+n : off+n]
}

// WriteAt writes p at off within the slot. A write reaching outside
// [0, Size) fails with ErrOutOfRange and writes nothing. When Direct, off,
// len(p) and &p[0] must be DirectAlign-aligned.
func (w *Writer) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > w.size || int64(len(p)) > w.size-off {
		return 0, fmt.Errorf("%w: %d bytes at %d, slot %s is %d bytes", ErrOutOfRange, len(p), off, w.slot, w.size)
	}
	return w.f.WriteAt(p, w.base+off)
}

// ReadAt reads the passive slot back. Reads outside [0, Size) fail with
// ErrOutOfRange; a read crossing Size is cut short with io.EOF. When
// Direct, the same alignment rules as WriteAt apply.
func (w *Writer) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > w.size {
		return 0, fmt.Errorf("%w: read at %d, slot %s is %d bytes", ErrOutOfRange, off, w.slot, w.size)
	}
	if int64(len(p)) > w.size-off {
		n, err := w.f.ReadAt(p[:w.size-off], w.base+off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return w.f.ReadAt(p, w.base+off)
}

// Size is the slot size in bytes.
func (w *Writer) Size() int64 { return w.size }

// Direct reports whether writes bypass the page cache (O_DIRECT).
func (w *Writer) Direct() bool { return w.direct }

// Path is the file or device written to (the device to throttle).
func (w *Writer) Path() string { return w.f.Name() }

// Slot is the slot being written.
func (w *Writer) Slot() Slot { return w.slot }

// Sync flushes written data to the device.
func (w *Writer) Sync() error { return w.f.Sync() }

// Close closes the slot; it does not Sync.
func (w *Writer) Close() error { return w.f.Close() }
