package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/abupdate/update_engine/pkg/bsdiff"
	"github.com/abupdate/update_engine/pkg/payload/metadata"
)

// Delta operation types (minor versions 2-4; PUFFDIFF, minor 5, in
// delta_puff.go).
const (
	OpSourceBsdiff = metadata.InstallOperation_SOURCE_BSDIFF
	OpBrotliBsdiff = metadata.InstallOperation_BROTLI_BSDIFF
)

// ErrSourceMismatch: the source (active) partition does not match the
// delta payload: its first old_partition_info.size bytes do not hash to
// old_partition_info.hash (checked before the first write, so nothing is
// written), or an operation's source blocks do not match its
// src_sha256_hash (such errors also wrap ErrOperationHashMismatch). Code 20
// (DownloadStateInitializationError), which is what AOSP update_engine
// reports for a source hash mismatch (ValidateSourceHash); the engine should
// not retry the same delta against the same source.
var ErrSourceMismatch = errors.New("payload: source partition does not match the delta's source")

func init() {
	// SOURCE_BSDIFF carries a BSDIFF40 or BSDF2 patch, BROTLI_BSDIFF a
	// BSDF2 patch (brotli streams); the reader accepts either in both.
	opKinds[OpSourceBsdiff] = &opKind{data: true, source: true, room: patchRoom, run: runSourceBsdiff}
	opKinds[OpBrotliBsdiff] = &opKind{data: true, source: true, room: patchRoom, run: runSourceBsdiff}
	preWriteChecks = append(preWriteChecks, func(ctx context.Context, p *plan, o *Options) error {
		return verifySource(ctx, p, o.Source)
	})
}

// patchRoom is what a bsdiff patch's three stream decoders hold: brotli
// ring buffers of up to 2 MiB each as our generator writes them (a heap
// profile of the upgrade pair's apply: 6.9 MB of them), bzip2's 900k
// blocks ~3.6 MB each at their largest.
const patchRoom = 6 << 20

// extentView is the concatenation of source extents as one io.ReaderAt;
// holes (start_block SparseHole) read as zeros.
type extentView struct {
	src  io.ReaderAt
	bs   uint64
	exts []*metadata.Extent
	size int64
}

func newExtentView(src io.ReaderAt, bs uint64, exts []*metadata.Extent) (*extentView, error) {
	v := &extentView{src: src, bs: bs, exts: exts}
	for _, e := range exts {
		n := e.GetNumBlocks()
		if n == 0 || n > MaxOpBytes/bs || uint64(v.size)+n*bs > 4*MaxOpBytes {
			return nil, fmt.Errorf("%w: source extents too large", ErrInvalidManifest)
		}
		v.size += int64(n * bs)
	}
	return v, nil
}

func (v *extentView) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("payload: negative source offset %d", off)
	}
	done := 0
	pos := int64(0)
	for _, e := range v.exts {
		if len(p) == done {
			break
		}
		n := int64(e.GetNumBlocks() * v.bs)
		cur := off + int64(done)
		if cur >= pos+n {
			pos += n
			continue
		}
		in := cur - pos
		k := min(n-in, int64(len(p)-done))
		dst := p[done : done+int(k)]
		if e.GetStartBlock() == SparseHole {
			clear(dst)
		} else if m, err := v.src.ReadAt(dst, int64(e.GetStartBlock()*v.bs)+in); m < len(dst) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return done + m, fmt.Errorf("read source block %d: %w", e.GetStartBlock(), err)
		}
		done += int(k)
		pos += n
	}
	if done < len(p) {
		return done, io.EOF
	}
	return done, nil
}

// checkSourceHash streams the view through SHA-256 and compares it with
// op's src_sha256_hash (when present).
func checkSourceHash(v *extentView, want []byte) error {
	if len(want) == 0 {
		return nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(v, 0, v.size)); err != nil {
		return err
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return fmt.Errorf("%w (%w): source blocks", ErrOperationHashMismatch, ErrSourceMismatch)
	}
	return nil
}

// sourceView returns the view of op's source extents, checked against
// its src_sha256_hash.
func sourceView(d *decoder, op *metadata.InstallOperation) (*extentView, error) {
	if d.src == nil {
		return nil, ErrNoSource
	}
	v, err := newExtentView(d.src, d.bs, op.SrcExtents)
	if err != nil {
		return nil, err
	}
	return v, checkSourceHash(v, op.GetSrcSha256Hash())
}

// runSourceBsdiff applies the patch data to the op's source extents.
func runSourceBsdiff(d *decoder, op *metadata.InstallOperation, data, out []byte) error {
	v, err := sourceView(d, op)
	if err != nil {
		return err
	}
	r, err := bsdiff.NewReader(bytes.NewReader(data), int64(len(data)), v, v.size)
	if err != nil {
		return fmt.Errorf("%v: %w", op.GetType(), err)
	}
	if r.Size() > int64(len(out)) {
		return fmt.Errorf("%v: patch makes %d bytes for %d dst bytes", op.GetType(), r.Size(), len(out))
	}
	return readAllInto(r, out, op.GetType().String())
}

// verifySource checks the source partition, when one is given, against
// the applied partition's old_partition_info (when it has a hash): a
// streaming SHA-256 of its first size bytes. Called before the first
// write. A delta whose operations read no source block (all new data) is
// checked too: it was made for that source, and a host on another one
// should fall back to a full payload as for any other delta.
func verifySource(ctx context.Context, p *plan, src io.ReaderAt) error {
	oi := p.m.Partitions[p.part].OldInfo
	if src == nil || oi == nil || len(oi.GetHash()) == 0 {
		return nil
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	size := int64(oi.GetSize())
	for pos := int64(0); pos < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := buf[:min(int64(len(buf)), size-pos)]
		if n, err := src.ReadAt(b, pos); n < len(b) {
			return fmt.Errorf("%w: source is shorter than %d bytes (read at %d: %v)", ErrSourceMismatch, size, pos, err)
		}
		h.Write(b)
		pos += int64(len(b))
	}
	if got := h.Sum(nil); !bytes.Equal(got, oi.GetHash()) {
		return fmt.Errorf("%w: sha256 of the first %d bytes is %x, want %x", ErrSourceMismatch, size, got, oi.GetHash())
	}
	return nil
}
