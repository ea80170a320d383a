package bsdiff

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/bits"

	"github.com/abupdate/update_engine/pkg/bsdiff/bzip2"
	"github.com/abupdate/update_engine/pkg/bsdiff/internal/sais"
	"github.com/andybalholm/brotli"
)

// Options tune Diff. The zero value writes BSDF2 with brotli quality 9.
type Options struct {
	// Format of the patch; the zero value is BSDF2Brotli.
	Format Format
	// BrotliQuality is 0-11; 0 means 9. Ignored by the bzip2 formats.
	BrotliQuality int
	// BrotliLGWin is the brotli window, 10-24 (log2 bytes); 0 means 22,
	// or less for a stream shorter than 4 MiB. bspatch needs that much
	// memory per brotli stream.
	BrotliLGWin int
}

// Diff writes to w a patch that turns oldData into newData.
//
// Memory, beyond oldData and newData themselves: the suffix array of
// oldData (4 bytes per byte, plus up to 2 more while it is built), the
// uncompressed diff and extra streams (1 byte per byte of newData), the
// compressed patch, and one compressor at a time (bzip2 about 10 MiB;
// brotli at quality 9 and a 4 MiB window about 55 MiB). Measured total
// allocation with old and new of equal size: BSDIFF40 6 bytes per byte
// of oldData; BSDF2/brotli 9.5 at 16 MiB, 19 at 4 MiB. Diff inputs of
// tens of MiB at a time (per extent) rather than whole images.
//
// Time is roughly linear (SA-IS, then one scan of newData with a
// suffix-array search per candidate position); inside long matches the
// scan skips ahead, so runs of zeros do not make it quadratic as they do
// Debian's bsdiff. ctx is checked every 4096 scan steps.
func Diff(ctx context.Context, oldData, newData []byte, w io.Writer, opts Options) error {
	if len(oldData) > MaxDiffInput || len(newData) > MaxDiffInput {
		return fmt.Errorf("%w: old %d, new %d bytes (max %d)", ErrTooLarge, len(oldData), len(newData), MaxDiffInput)
	}
	var comp byte
	switch opts.Format {
	case BSDF2Brotli:
		comp = compBrotli
	case BSDF2BZ2, BSDIFF40:
		comp = compBZ2
	case BSDF2None:
		comp = compNone
	default:
		return fmt.Errorf("%w: %v", ErrFormat, opts.Format)
	}
	d := &differ{old: oldData, new: newData, sa: make([]int32, len(oldData))}
	sais.Build(oldData, d.sa)
	if err := ctx.Err(); err != nil {
		return err
	}
	raw, err := d.diff(ctx)
	if err != nil {
		return err
	}
	d.sa = nil
	var hdr [headerLen]byte
	if opts.Format == BSDIFF40 {
		copy(hdr[:], "BSDIFF40")
	} else {
		copy(hdr[:], "BSDF2")
		hdr[5], hdr[6], hdr[7] = comp, comp, comp
	}
	var streams [3]bytes.Buffer
	for i, data := range [][]byte{raw.ctrl, raw.diff, raw.extra} {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := compress(&streams[i], data, comp, opts); err != nil {
			return fmt.Errorf("bsdiff: compressing %s stream: %w", streamNames[i], err)
		}
	}
	putInt(hdr[8:], int64(streams[0].Len()))
	putInt(hdr[16:], int64(streams[1].Len()))
	putInt(hdr[24:], int64(len(newData)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	for i := range streams {
		if _, err := streams[i].WriteTo(w); err != nil {
			return err
		}
	}
	return nil
}

func compress(dst *bytes.Buffer, data []byte, comp byte, opts Options) error {
	var cw io.WriteCloser
	switch comp {
	case compNone:
		_, err := dst.Write(data)
		return err
	case compBZ2:
		cw = bzip2.NewWriter(dst)
	case compBrotli:
		q, lg := opts.BrotliQuality, opts.BrotliLGWin
		if q == 0 {
			q = 9
		}
		if lg == 0 {
			// A window larger than the stream gains nothing and costs
			// encoder and decoder memory.
			lg = min(22, max(10, bits.Len(uint(len(data)))))
		}
		cw = brotli.NewWriterOptions(dst, brotli.WriterOptions{Quality: q, LGWin: lg})
	}
	if _, err := cw.Write(data); err != nil {
		return err
	}
	return cw.Close()
}
