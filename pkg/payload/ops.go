package payload

import (
	"bytes"
	"compress/bzip2"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/abupdate/update_engine/pkg/payload/internal/xzdec"
	"github.com/abupdate/update_engine/pkg/payload/metadata"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Op type aliases, for callers that do not import the metadata package.
const (
	OpReplace     = metadata.InstallOperation_REPLACE
	OpReplaceBZ   = metadata.InstallOperation_REPLACE_BZ
	OpReplaceXZ   = metadata.InstallOperation_REPLACE_XZ
	OpReplaceZstd = metadata.InstallOperation_REPLACE_ZSTD
	OpZero        = metadata.InstallOperation_ZERO
	OpDiscard     = metadata.InstallOperation_DISCARD
	OpSourceCopy  = metadata.InstallOperation_SOURCE_COPY
)

// opKind describes how one operation type is validated and executed. Adding
// an operation type (SOURCE_BSDIFF, BROTLI_BSDIFF, …) is one entry in opKinds.
type opKind struct {
	data      bool // carries a data blob
	source    bool // reads the source partition
	extension bool // project extension: refused by strict readers
	inPlace   bool // the data blob is the output (REPLACE): read it into the output buffer
	noOutput  bool // writes zeros without a decoded buffer (ZERO, DISCARD)
	// progressive: run reports its output's final prefix (decoder.progress),
	// so the writer writes it (and finish hashes it) while the rest decodes.
	progressive bool
	// streamed: an operation of more than streamAbove output bytes is
	// decoded by the run's one stream decoder, in pieces that are written
	// and hashed while the rest decodes, with no buffer of the output's
	// size (zstd.go); smaller ones by run, into their output, side by side.
	streamed bool
	// room is memory run holds besides the data and the output: the
	// decoders of a patch's streams, a source's puff. The budget counts
	// it, so that workers do not run more such operations at once than
	// it has room for.
	room int64
	// run decodes the operation into out (len = dst bytes). data is the
	// verified blob.
	run func(d *decoder, op *metadata.InstallOperation, data, out []byte) error
}

var opKinds = map[metadata.InstallOperation_Type]*opKind{
	OpReplace:     {data: true, inPlace: true, run: runReplace},
	OpReplaceBZ:   {data: true, run: runBZ},
	OpReplaceXZ:   {data: true, progressive: true, run: runXZ},
	OpReplaceZstd: {data: true, extension: true, streamed: true, run: runZstd},
	OpZero:        {noOutput: true},
	OpDiscard:     {noOutput: true}, // written as zeros: deterministic partition hash
	OpSourceCopy:  {source: true, run: runSourceCopy},
}

// decoder is one worker's reusable decoding state; not shared.
type decoder struct {
	src  io.ReaderAt
	bs   uint64
	zstd *zstd.Decoder
	xz   *xzdec.Decoder
	// progress, set while a progressive run decodes, takes the length of
	// the output's final prefix.
	progress func(n int)
}

func (d *decoder) close() {
	if d.zstd != nil {
		d.zstd.Close()
	}
}

// fill checks a decoded length n against the output and zero-pads the last
// block.
func fill(out []byte, n int, what string) error {
	if n > len(out) {
		return fmt.Errorf("%s decodes to more than %d bytes", what, len(out))
	}
	clear(out[n:])
	return nil
}

func runReplace(_ *decoder, _ *metadata.InstallOperation, data, out []byte) error {
	// data aliases out[:len(data)].
	return fill(out, len(data), "REPLACE")
}

func readAllInto(r io.Reader, out []byte, what string) error {
	n, err := io.ReadFull(r, out)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return fill(out, n, what)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	// out is full: the stream must end here.
	var one [1]byte
	if k, _ := r.Read(one[:]); k > 0 {
		return fmt.Errorf("%s decodes to more than %d bytes", what, len(out))
	}
	return nil
}

func runBZ(_ *decoder, _ *metadata.InstallOperation, data, out []byte) error {
	return readAllInto(bzip2.NewReader(bytes.NewReader(data)), out, "REPLACE_BZ")
}

func runXZ(d *decoder, _ *metadata.InstallOperation, data, out []byte) error {
	// The lean path: the whole stream is in memory, decode straight into out.
	if d.xz == nil {
		d.xz = new(xzdec.Decoder)
	}
	n, err := d.xz.DecodeProgress(data, out, d.progress)
	switch {
	case err == nil:
		return fill(out, n, "REPLACE_XZ")
	case errors.Is(err, xzdec.ErrTooLong):
		return fmt.Errorf("REPLACE_XZ decodes to more than %d bytes", len(out))
	case !errors.Is(err, xzdec.ErrUnsupported):
		return fmt.Errorf("REPLACE_XZ: %w", err)
	}
	// Filters or layouts the lean path does not handle.
	r, err := xz.ReaderConfig{SingleStream: true}.NewReader(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("REPLACE_XZ: %w", err)
	}
	return readAllInto(r, out, "REPLACE_XZ")
}

// runZstd decodes an operation of at most streamAbove bytes whole, into
// its output, which is also the window's history: a window no larger than
// the operation costs no memory.
func runZstd(d *decoder, _ *metadata.InstallOperation, data, out []byte) error {
	if d.zstd == nil {
		z, err := newZstdDecoder(zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			return err
		}
		d.zstd = z
	}
	// Into out, never past it (the cap limit).
	res, err := d.zstd.DecodeAll(data, out[:0:len(out)])
	if err != nil {
		return fmt.Errorf("REPLACE_ZSTD: %w", err)
	}
	if len(res) > len(out) || (len(res) > 0 && &res[0] != &out[0]) {
		return fmt.Errorf("REPLACE_ZSTD decodes to more than %d bytes", len(out))
	}
	return fill(out, len(res), "REPLACE_ZSTD")
}

// readExtents reads the source extents of op into out and checks
// src_sha256_hash when present.
func readExtents(d *decoder, op *metadata.InstallOperation, bs uint64, out []byte) error {
	if d.src == nil {
		return ErrNoSource
	}
	off := uint64(0)
	for _, e := range op.SrcExtents {
		n := e.GetNumBlocks() * bs
		if off+n > uint64(len(out)) {
			return fmt.Errorf("source extents exceed %d bytes", len(out))
		}
		if e.GetStartBlock() == SparseHole {
			clear(out[off : off+n])
		} else if _, err := d.src.ReadAt(out[off:off+n], int64(e.GetStartBlock()*bs)); err != nil {
			return fmt.Errorf("read source: %w", err)
		}
		off += n
	}
	if want := op.GetSrcSha256Hash(); len(want) > 0 {
		if got := sha256.Sum256(out[:off]); !bytes.Equal(got[:], want) {
			return fmt.Errorf("%w: source blocks", ErrOperationHashMismatch)
		}
	}
	return nil
}

func runSourceCopy(d *decoder, op *metadata.InstallOperation, _, out []byte) error {
	return readExtents(d, op, d.bs, out)
}
