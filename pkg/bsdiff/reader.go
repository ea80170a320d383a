package bsdiff

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/andybalholm/brotli"
)

// Header is the fixed 32-byte start of a patch.
type Header struct {
	// Magic is "BSDIFF40" or "BSDF2".
	Magic string
	// Compressors holds the BSDF2 compressor bytes of the ctrl, diff and
	// extra streams (0 none, 1 bzip2, 2 brotli); all 1 for BSDIFF40.
	Compressors [3]byte
	// CtrlLen and DiffLen are the compressed lengths of the ctrl and diff
	// streams; the extra stream runs from 32+CtrlLen+DiffLen to the end.
	CtrlLen, DiffLen int64
	// NewSize is the length of the data the patch produces.
	NewSize int64
}

// ParseHeader decodes and checks the header of a patch patchSize bytes
// long whose first 32 bytes are b.
func ParseHeader(b []byte, patchSize int64) (Header, error) {
	var h Header
	if len(b) < headerLen || patchSize < headerLen {
		if bytes.HasPrefix(b, []byte("BSDIFF40")) || bytes.HasPrefix(b, []byte("BSDF2")) {
			return h, fmt.Errorf("%w: patch is %d bytes, shorter than the %d-byte header", ErrHeader, patchSize, headerLen)
		}
		return h, ErrMagic
	}
	switch {
	case string(b[:8]) == "BSDIFF40":
		h.Magic = "BSDIFF40"
		h.Compressors = [3]byte{compBZ2, compBZ2, compBZ2}
	case string(b[:5]) == "BSDF2":
		h.Magic = "BSDF2"
		copy(h.Compressors[:], b[5:8])
		for i, c := range h.Compressors {
			if c > compBrotli {
				return h, fmt.Errorf("%w: %s stream compressor %d", ErrCompressor, streamNames[i], c)
			}
		}
	default:
		return h, fmt.Errorf("%w: %q", ErrMagic, b[:8])
	}
	h.CtrlLen, h.DiffLen, h.NewSize = getInt(b[8:]), getInt(b[16:]), getInt(b[24:])
	switch {
	case h.CtrlLen < 0 || h.DiffLen < 0 || h.NewSize < 0:
		return h, fmt.Errorf("%w: negative length (ctrl %d, diff %d, new %d)", ErrHeader, h.CtrlLen, h.DiffLen, h.NewSize)
	case h.CtrlLen > patchSize-headerLen || h.DiffLen > patchSize-headerLen-h.CtrlLen:
		return h, fmt.Errorf("%w: ctrl %d + diff %d bytes overrun the %d-byte patch", ErrHeader, h.CtrlLen, h.DiffLen, patchSize)
	}
	return h, nil
}

var streamNames = [3]string{"ctrl", "diff", "extra"}

// Reader produces the new data of a patch applied to old data. It reads
// the old data only where the patch says, through an io.ReaderAt, and
// holds neither old nor new in memory.
type Reader struct {
	h       Header
	old     io.ReaderAt
	oldSize int64
	streams [3]io.Reader // ctrl, diff, extra

	newPos    int64 // bytes of new data produced
	oldPos    int64 // next old byte the diff run adds
	nextOld   int64 // oldPos once the current triple is done
	diffLeft  int64
	extraLeft int64
	entry     int // ctrl triples read
	buf       []byte
	err       error // sticky
}

const bufSize = 32 << 10

// NewReader returns a Reader that applies the patch (patchSize bytes read
// through patch) to the oldSize bytes of old. old is typically a
// concatenated view of the source extents of an install operation.
func NewReader(patch io.ReaderAt, patchSize int64, old io.ReaderAt, oldSize int64) (*Reader, error) {
	var hb [headerLen]byte
	n, err := patch.ReadAt(hb[:min(int64(headerLen), max(patchSize, 0))], 0)
	if err != nil && !(errors.Is(err, io.EOF) && int64(n) == min(int64(headerLen), patchSize)) {
		return nil, fmt.Errorf("bsdiff: reading patch header: %w", err)
	}
	h, err := ParseHeader(hb[:n], patchSize)
	if err != nil {
		return nil, err
	}
	if oldSize < 0 {
		return nil, fmt.Errorf("%w: old size %d", ErrOldRange, oldSize)
	}
	r := &Reader{h: h, old: old, oldSize: oldSize, buf: make([]byte, bufSize)}
	offs := [4]int64{headerLen, headerLen + h.CtrlLen, headerLen + h.CtrlLen + h.DiffLen, patchSize}
	for i := range r.streams {
		sec := io.NewSectionReader(patch, offs[i], offs[i+1]-offs[i])
		switch h.Compressors[i] {
		case compNone:
			r.streams[i] = bufio.NewReaderSize(sec, 4096)
		case compBZ2:
			r.streams[i] = bzip2.NewReader(sec)
		case compBrotli:
			r.streams[i] = brotli.NewReader(sec)
		}
	}
	return r, nil
}

// Header returns the patch header.
func (r *Reader) Header() Header { return r.h }

// Size returns the length of the new data, as the header claims it. Read
// fails rather than return fewer or more bytes.
func (r *Reader) Size() int64 { return r.h.NewSize }

// Read reads new data. After an error every call returns the same error;
// io.EOF comes only after exactly Size bytes.
func (r *Reader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && r.err == nil {
		switch {
		case r.diffLeft > 0:
			k := int(min(int64(len(p)-n), r.diffLeft, bufSize))
			if err := r.readStream(1, p[n:n+k]); err != nil {
				break
			}
			if err := r.readOld(r.buf[:k]); err != nil {
				break
			}
			for i, b := range r.buf[:k] {
				p[n+i] += b
			}
			n += k
			r.diffLeft -= int64(k)
			r.oldPos += int64(k)
			r.newPos += int64(k)
		case r.extraLeft > 0:
			k := int(min(int64(len(p)-n), r.extraLeft))
			if err := r.readStream(2, p[n:n+k]); err != nil {
				break
			}
			n += k
			r.extraLeft -= int64(k)
			r.newPos += int64(k)
		case r.newPos == r.h.NewSize:
			if n > 0 {
				return n, nil
			}
			r.finish()
		default:
			r.oldPos = r.nextOld
			r.nextCtrl()
		}
	}
	if n > 0 && r.err != io.EOF {
		// Report the bytes produced; the error comes on the next call.
		return n, nil
	}
	return n, r.err
}

// nextCtrl reads and checks the next ctrl triple.
func (r *Reader) nextCtrl() {
	var b [24]byte
	if err := r.readStream(0, b[:]); err != nil {
		return
	}
	r.entry++
	d, x, s := getInt(b[0:]), getInt(b[8:]), getInt(b[16:])
	left := r.h.NewSize - r.newPos
	switch {
	case d < 0 || x < 0:
		r.err = fmt.Errorf("%w: ctrl entry %d: negative length (diff %d, extra %d)", ErrCorrupt, r.entry, d, x)
	case d > left || x > left-d:
		r.err = fmt.Errorf("%w: ctrl entry %d: diff %d + extra %d bytes overrun new size %d at offset %d", ErrCorrupt, r.entry, d, x, r.h.NewSize, r.newPos)
	case d > r.oldSize-r.oldPos:
		r.err = fmt.Errorf("%w: ctrl entry %d: diff of %d bytes at old offset %d, old size %d", ErrOldRange, r.entry, d, r.oldPos, r.oldSize)
	default:
		end := r.oldPos + d
		// The seek after the last triple is never used; bsdiff's is in
		// range anyway, but do not reject a patch over it.
		if d+x < left && (s < -end || s > r.oldSize-end) {
			r.err = fmt.Errorf("%w: ctrl entry %d: seek %d from old offset %d, old size %d", ErrOldRange, r.entry, s, end, r.oldSize)
			return
		}
		r.diffLeft, r.extraLeft, r.nextOld = d, x, end+s
	}
}

// finish sets r.err to io.EOF, or to ErrCorrupt if a stream fails its
// end check: reading on makes the decompressors verify their last block
// and stream checksums. Trailing data is tolerated, as bspatch does.
func (r *Reader) finish() {
	var b [1]byte
	for i, s := range r.streams {
		if _, err := io.ReadFull(s, b[:]); err != nil && err != io.EOF {
			r.err = fmt.Errorf("%w: %s stream end (new offset %d): %w", ErrCorrupt, streamNames[i], r.newPos, err)
			return
		}
	}
	r.err = io.EOF
}

// readStream fills p from stream i or sets the sticky error.
func (r *Reader) readStream(i int, p []byte) error {
	_, err := io.ReadFull(r.streams[i], p)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("%w: %s stream ends early (ctrl entry %d, new offset %d)", ErrCorrupt, streamNames[i], r.entry, r.newPos)
		} else {
			err = fmt.Errorf("%w: %s stream (ctrl entry %d, new offset %d): %w", ErrCorrupt, streamNames[i], r.entry, r.newPos, err)
		}
		r.err = err
	}
	return err
}

// readOld fills p from old data at r.oldPos (checked to be in range).
func (r *Reader) readOld(p []byte) error {
	n, err := r.old.ReadAt(p, r.oldPos)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	r.err = fmt.Errorf("bsdiff: reading old data at offset %d: %w", r.oldPos, err)
	return r.err
}

// Apply applies patch to the oldSize bytes of old and writes the new data
// to dst in order, returning the number of bytes written. ctx is checked
// between 64 KiB chunks.
func Apply(ctx context.Context, old io.ReaderAt, oldSize int64, patch []byte, dst io.Writer) (int64, error) {
	r, err := NewReader(bytes.NewReader(patch), int64(len(patch)), old, oldSize)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 64<<10)
	var written int64
	for {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			written += int64(w)
			if werr != nil {
				return written, werr
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}
