package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"

	"github.com/abupdate/update_engine/pkg/bsdiff"
	"github.com/abupdate/update_engine/pkg/bsdiff/bzip2"
	"github.com/abupdate/update_engine/pkg/payload/internal/puff"
	"github.com/abupdate/update_engine/pkg/payload/metadata"
	"github.com/andybalholm/brotli"
)

// readNew reads the job's dst blocks of the new image, concatenated (the
// image's last block zero-padded), into the worker's buffer.
func (c *deltaWorker) readNew(j *deltaJob) ([]byte, error) {
	n := len(j.dst) * blockSize
	if cap(c.newBuf) < n {
		c.newBuf = make([]byte, n)
	}
	b := c.newBuf[:n]
	pos := 0
	for _, e := range blockExtents(j.dst) {
		start := int64(e.GetStartBlock()) * blockSize
		k := int(e.GetNumBlocks()) * blockSize
		want := min(int64(k), c.g.o.NewSize-start)
		if m, err := c.g.o.New.ReadAt(b[pos:pos+int(want)], start); int64(m) < want {
			return nil, fmt.Errorf("payload: read new image at %d: %w", start, err)
		}
		clear(b[pos+int(want) : pos+k])
		pos += k
	}
	return b, nil
}

// sourceBlocks picks the old blocks a changed job is diffed against:
// first the old blocks of the copied blocks it writes (absorbCopies),
// then, for dst blocks of files with an old version, the matching part of
// that version (deltafiles.go); then, for each run of consecutive dst
// blocks, the old blocks hit by the run's anchors, most hits first, each
// with up to hitRadius blocks of context, then the old blocks at the
// run's own offset, up to 4 blocks per dst block plus 16. The union, at
// most deltaSrcBlocks, in old order.
func (c *deltaWorker) sourceBlocks(j *deltaJob, nw []byte) []uint32 {
	g := c.g
	chosen := map[uint32]bool{}
	for _, b := range j.dst {
		if ob, ok := g.copySrc[b]; ok {
			chosen[ob] = true
		}
	}
	for _, b := range j.dst {
		if f, ok := g.files[b]; ok {
			for _, ob := range f.oldAround() {
				if len(chosen) < deltaSrcBlocks && int(ob) < g.oldBlks {
					chosen[ob] = true
				}
			}
		}
	}
	type hit struct {
		b uint32
		n int
	}
	pos := 0
	for _, e := range blockExtents(j.dst) {
		start, n := int(e.GetStartBlock()), int(e.GetNumBlocks())
		data := nw[pos : pos+n*blockSize]
		pos += n * blockSize
		hits := map[uint32]int{}
		newAnchorScanner(0).scan(data, func(h uint64, _ int64) {
			for _, a := range g.old.lookup(h) {
				hits[uint32((a.pos-1)/blockSize)]++
			}
		})
		ranked := make([]hit, 0, len(hits))
		for b, k := range hits {
			ranked = append(ranked, hit{b, k})
		}
		slices.SortFunc(ranked, func(x, y hit) int {
			if x.n != y.n {
				return y.n - x.n
			}
			return int(x.b) - int(y.b)
		})
		budget := 4*n + 16
		added := 0
		add := func(lo, hi int) {
			for b := max(lo, 0); b < min(hi, g.oldBlks) && added < budget && len(chosen) < deltaSrcBlocks; b++ {
				if !chosen[uint32(b)] {
					chosen[uint32(b)] = true
					added++
				}
			}
		}
		r := min(hitRadius, n+2)
		for _, h := range ranked {
			if added >= budget || len(chosen) >= deltaSrcBlocks {
				break
			}
			add(int(h.b)-r, int(h.b)+r+1)
		}
		add(start, start+n)
	}
	out := make([]uint32, 0, len(chosen))
	for b := range chosen {
		out = append(out, b)
	}
	slices.Sort(out)
	return out
}

// replace makes op the REPLACE_XZ of the new data nw, or REPLACE when xz
// does not shorten it, and returns its data (in the worker's buffers).
func (c *deltaWorker) replace(ctx context.Context, nw []byte, op *metadata.InstallOperation) ([]byte, error) {
	if err := compressXZ(ctx, &c.xb, nw, len(nw), c.g.o.XZCommand); err != nil {
		return nil, err
	}
	op.Type = OpReplaceXZ.Enum()
	best := c.xb.Bytes()
	if len(nw) <= len(best) {
		op.Type, best = OpReplace.Enum(), nw
	}
	return best, nil
}

// diff turns op, the replacement of a changed run (data best), into a
// bsdiff against old blocks, or a PUFFDIFF when the run holds deflate
// streams, when that is smaller.
func (c *deltaWorker) diff(ctx context.Context, j *deltaJob, nw []byte, op *metadata.InstallOperation, best []byte) (*metadata.InstallOperation, []byte, error) {
	src := j.src
	if src == nil {
		src = c.sourceBlocks(j, nw)
	}
	src = fillGaps(src, srcGapFill)
	if len(src) == 0 {
		// A group of added files with no source (joinAdded): its patch
		// is made from one block, the old image's first. AOSP's paycheck
		// refuses a source operation that reads no block (its generator
		// makes none); 4 KiB of source cost the patch nothing.
		src = []uint32{0}
	}
	old, err := c.readOld(src)
	if err != nil {
		return nil, nil, err
	}
	limit := len(best)
	if j.added {
		// An added file's diff must beat xz by a margin: rejected, it
		// joins the new data, where xz does better than on it alone.
		limit = limit * addedDiffGain / 100
	}
	patchType, patch, err := c.bsdiff(ctx, j, old, nw, limit)
	if err != nil {
		return nil, nil, err
	}
	var pp []byte
	switch {
	case !tryPuffdiff:
	case j.added:
		// Its PUFFDIFF is made with the other added files' (joinAdded):
		// alone, the small ones lose to xz, joined they gain.
		j.puffs = len(puff.Locate(nw, puffOpLimit)) > 0
	case patch == nil || len(patch) > len(nw)/puffWorthBsdiff:
		if pp, err = c.puffDiff(ctx, old, nw); err != nil {
			return nil, nil, err
		}
	}
	if pp != nil && len(pp) < len(best) && (patch == nil || len(pp) < len(patch)) {
		patchType, patch = OpPuffdiff, pp
	}
	if patch == nil {
		return op, bytes.Clone(best), nil
	}
	s := sha256.Sum256(old)
	op.Type = patchType.Enum()
	op.SrcExtents = blockExtents(src)
	op.SrcSha256Hash = s[:]
	op.SrcLength = u64(uint64(len(old)))
	op.DstLength = u64(uint64(len(nw)))
	return op, patch, nil
}

// readOld reads the old blocks src, concatenated, into the worker's
// buffer.
func (c *deltaWorker) readOld(src []uint32) ([]byte, error) {
	if cap(c.oldB) < len(src)*blockSize {
		c.oldB = make([]byte, len(src)*blockSize)
	}
	old := c.oldB[:len(src)*blockSize]
	var pos int
	for _, e := range blockExtents(src) {
		n := int(e.GetNumBlocks()) * blockSize
		if k, err := c.g.o.Old.ReadAt(old[pos:pos+n], int64(e.GetStartBlock())*blockSize); k < n {
			return nil, fmt.Errorf("payload: read old image at block %d: %w", e.GetStartBlock(), err)
		}
		pos += n
	}
	return old, nil
}

// bsdiff returns the smaller of the bzip2 and brotli bsdiff patches from
// old to nw (a copy), or nil when neither is under limit bytes.
func (c *deltaWorker) bsdiff(ctx context.Context, j *deltaJob, old, nw []byte, limit int) (metadata.InstallOperation_Type, []byte, error) {
	c.raw.Reset()
	if err := bsdiff.Diff(ctx, old, nw, &c.raw, bsdiff.Options{Format: bsdiff.BSDF2None}); err != nil {
		return 0, nil, fmt.Errorf("payload: bsdiff of %d blocks from %d: %w", len(j.dst), j.dst[0], err)
	}
	streams, err := splitRawPatch(c.raw.Bytes())
	if err != nil {
		return 0, nil, err
	}
	var patchType metadata.InstallOperation_Type
	var patch []byte
	if bz, err := recompress(&c.bz, streams, bsdiffBZ2, len(nw)); err != nil {
		return 0, nil, err
	} else if len(bz) < limit {
		patchType, patch = OpSourceBsdiff, bz
	}
	if br, err := recompress(&c.br, streams, bsdiffBrotli, len(nw)); err != nil {
		return 0, nil, err
	} else if len(br) < limit && (patch == nil || len(br) < len(patch)) {
		patchType, patch = OpBrotliBsdiff, br
	}
	return patchType, bytes.Clone(patch), nil
}

// puffWorthBsdiff: a bsdiff patch under 1/puffWorthBsdiff of the run is
// not worth a PUFFDIFF trial (its deflate streams are unchanged). On the
// upgrade pair, 7 runs of rewritten files holding deflate streams had
// bsdiff patches of 0.3-0.7% of their 2 MiB and PUFFDIFFs 12-800% larger
// than those; the two PUFFDIFFs kept replaced patches of 13% and 76%.
const puffWorthBsdiff = 64

// tryPuffdiff: runs holding deflate streams are tried as PUFFDIFF (tests
// turn it off to compare).
var tryPuffdiff = true

// addedDiffGain is the size, in percent of its xz, that an added file's
// diff must stay under to be kept.
var addedDiffGain = 80

// srcGapFill: gaps of up to this many blocks between source blocks are
// filled, so that an operation lists fewer source extents. The manifest
// is not compressed, and an extent costs about 8 bytes in it; the filled
// blocks cost the applier only reading and hashing them. On the upgrade
// pair, 6 337 source extents became 1 617 (at 8), the sources 30 209
// blocks 41 849; it goes with absorbRun (measured there).
const srcGapFill = 64

// fillGaps returns the sorted blocks src with the gaps of up to gap
// blocks between them filled.
func fillGaps(src []uint32, gap uint32) []uint32 {
	if len(src) == 0 {
		return src
	}
	out := []uint32{src[0]}
	for _, b := range src[1:] {
		if last := out[len(out)-1]; b > last+1 && b-last-1 <= gap {
			for f := last + 1; f < b; f++ {
				out = append(out, f)
			}
		}
		out = append(out, b)
	}
	return out
}

const (
	bsdiffBZ2    = 1
	bsdiffBrotli = 2
)

var errRawPatch = errors.New("payload: unexpected raw bsdiff patch")

// splitRawPatch returns the ctrl, diff and extra streams of an
// uncompressed BSDF2 patch.
func splitRawPatch(p []byte) ([3][]byte, error) {
	var s [3][]byte
	if len(p) < 32 || string(p[:5]) != "BSDF2" || p[5]|p[6]|p[7] != 0 {
		return s, errRawPatch
	}
	cl, dl := binary.LittleEndian.Uint64(p[8:]), binary.LittleEndian.Uint64(p[16:])
	if cl>>63 != 0 || dl>>63 != 0 || 32+cl+dl > uint64(len(p)) {
		return s, errRawPatch
	}
	s[0] = p[32 : 32+cl]
	s[1] = p[32+cl : 32+cl+dl]
	s[2] = p[32+cl+dl:]
	return s, nil
}

// recompress writes a BSDF2 patch with all streams compressed by comp
// into buf and returns its bytes.
func recompress(buf *bytes.Buffer, s [3][]byte, comp byte, newSize int) ([]byte, error) {
	buf.Reset()
	var hdr [32]byte
	copy(hdr[:], "BSDF2")
	hdr[5], hdr[6], hdr[7] = comp, comp, comp
	buf.Write(hdr[:])
	var lens [3]int
	for i, data := range s {
		before := buf.Len()
		var w io.WriteCloser
		if comp == bsdiffBZ2 {
			w, _ = bzip2.NewWriterLevel(buf, bzLevel(data))
		} else {
			// Quality 11, not 9: on the upgrade pair 17 KB (0.3%) smaller,
			// for 36 s more generation CPU (82 s, 0.26x zstd's).
			lg := min(21, max(10, bits.Len(uint(len(data)))))
			w = brotli.NewWriterOptions(buf, brotli.WriterOptions{Quality: 11, LGWin: lg})
		}
		if _, err := w.Write(data); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		lens[i] = buf.Len() - before
	}
	b := buf.Bytes()
	binary.LittleEndian.PutUint64(b[8:], uint64(lens[0]))
	binary.LittleEndian.PutUint64(b[16:], uint64(lens[1]))
	binary.LittleEndian.PutUint64(b[24:], uint64(newSize))
	return b, nil
}

// bzLevel is the smallest bzip2 level (block size) whose blocks hold data
// as at level 9: a decoder allocates 400 KB per level and stream, and
// an applier decodes a patch's three streams at once, for several
// operations in flight. Blocks hold data after bzip2's first run-length
// coding (a run of 4-255 equal bytes takes 5), which shrinks the diff
// stream, mostly zeros, to a small part of its size.
func bzLevel(data []byte) int {
	n := 0
	for i := 0; i < len(data); {
		j := i + 1
		for j < len(data) && j-i < 255 && data[j] == data[i] {
			j++
		}
		if j-i >= 4 {
			n += 5
		} else {
			n += j - i
		}
		i = j
	}
	return min(9, (n+19)/100000+1)
}
