package payload

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/abupdate/update_engine/pkg/bsdiff"
	"github.com/abupdate/update_engine/pkg/payload/internal/puff"
	"github.com/abupdate/update_engine/pkg/payload/metadata"
)

// OpPuffdiff is PUFFDIFF (minor version 5): a puffin patch (see package
// puff) from the source extents to the destination, bsdiff between their
// puff streams, where deflate streams are carried as puffs.
//
// What AOSP's applier (update_engine + puffin) should accept of the ones
// made here, from their sources, not tested against it: each deflate
// extent is a whole stream (puffin's generator lists each block; its
// puffer parses all the blocks of an extent); deflate streams of PNG
// IDAT chunks are plain deflate extents. Added files with no old version
// get a PUFFDIFF from one source block, the old image's first (AOSP's
// paycheck refuses a source operation without source blocks; this
// applier accepts one, from nothing).
const OpPuffdiff = metadata.InstallOperation_PUFFDIFF

// puffMax bounds a PUFFDIFF's source bytes and each of its two puff
// streams, which the applier holds whole (AOSP's applier streams them;
// an AOSP payload puffing more than this is refused here).
const puffMax = MaxOpBytes

// puffRoom is what a PUFFDIFF holds besides its data and output: its
// patch's decoders (patchRoom) and its source's puff, which our generator
// keeps within puffSrcLimit (held in a buffer grown by appending: up to
// twice that).
const puffRoom = patchRoom + 2*puffSrcLimit

func init() {
	opKinds[OpPuffdiff] = &opKind{data: true, source: true, room: puffRoom, run: runPuffdiff}
}

// runPuffdiff puffs the source extents, applies the bsdiff patch to their
// puff stream and huffs the result into out, one deflate's puff at a time.
// Only out is written.
func runPuffdiff(d *decoder, op *metadata.InstallOperation, data, out []byte) error {
	v, err := sourceView(d, op)
	if err != nil {
		return err
	}
	p, err := puff.Decode(data)
	if err != nil {
		return fmt.Errorf("PUFFDIFF: %w", err)
	}
	if p.Src.PuffLength > puffMax || p.Dst.PuffLength > puffMax {
		return fmt.Errorf("PUFFDIFF: puff streams of %d and %d bytes: over %d", p.Src.PuffLength, p.Dst.PuffLength, puffMax)
	}
	src, err := puffSource(v, &p.Src)
	if err != nil {
		return err
	}
	r, err := bsdiff.NewReader(bytes.NewReader(p.Bsdiff), int64(len(p.Bsdiff)), src, int64(p.Src.PuffLength))
	if err != nil {
		return fmt.Errorf("PUFFDIFF: %w", err)
	}
	if r.Size() != int64(p.Dst.PuffLength) {
		return fmt.Errorf("PUFFDIFF: bsdiff makes %d bytes, the header says a %d byte puff stream", r.Size(), p.Dst.PuffLength)
	}
	if err := puff.HuffFrom(r, p.Dst.PuffLength, p.Dst.Deflates, p.Dst.Puffs, out); err != nil {
		return fmt.Errorf("PUFFDIFF: destination: %w", err)
	}
	return nil
}

// puffSource returns the source's puff stream as the patch header says it
// is: the source itself when it has no deflates, else puffed in memory
// (the puffs must lie where the header puts them).
func puffSource(v *extentView, s *puff.StreamInfo) (io.ReaderAt, error) {
	if len(s.Deflates) == 0 {
		if s.PuffLength != uint64(v.size) {
			return nil, fmt.Errorf("PUFFDIFF: source: %w: puff length %d for %d bytes without deflates", puff.ErrCorrupt, s.PuffLength, v.size)
		}
		return v, nil
	}
	if v.size > puffMax {
		return nil, fmt.Errorf("PUFFDIFF: %d source bytes to puff: over %d", v.size, puffMax)
	}
	old := make([]byte, v.size)
	if _, err := v.ReadAt(old, 0); err != nil {
		return nil, fmt.Errorf("PUFFDIFF: %w", err)
	}
	srcPuff, puffs, err := puff.Puff(old, s.Deflates, int(s.PuffLength))
	if err != nil {
		return nil, fmt.Errorf("PUFFDIFF: source: %w", err)
	}
	if uint64(len(srcPuff)) != s.PuffLength || !slices.Equal(puffs, s.Puffs) {
		return nil, fmt.Errorf("PUFFDIFF: source: %w: its puff stream is not the header's", puff.ErrCorrupt)
	}
	return bytes.NewReader(srcPuff), nil
}

// puffOpLimit bounds the destination's puff stream of the PUFFDIFF
// operations made here, and puffSrcLimit their source's: the applier
// holds the source's whole (when it has deflates; when it has none,
// bsdiff reads the source blocks) and one deflate's puff of the
// destination at a time. With the memory the applier's budget counts
// (data and output), they must stay within its 64 MiB.
const (
	puffOpLimit  = 16 << 20
	puffSrcLimit = 4 << 20
)

// puffDiff returns the puffin patch turning old into nw, the smaller of its
// bzip2 and brotli forms, or nil when nw has no deflate stream to puff.
func (c *deltaWorker) puffDiff(ctx context.Context, old, nw []byte) ([]byte, error) {
	var p puff.Patch
	dstPuff, ok := puffSide(nw, &p.Dst)
	if !ok {
		return nil, nil
	}
	srcPuff, ok := puffSide(old, &p.Src)
	if !ok || len(srcPuff) > puffSrcLimit {
		srcPuff = old // no deflates in the source (or too large): as is
		p.Src = puff.StreamInfo{PuffLength: uint64(len(old))}
	}
	c.raw.Reset()
	if err := bsdiff.Diff(ctx, srcPuff, dstPuff, &c.raw, bsdiff.Options{Format: bsdiff.BSDF2None}); err != nil {
		return nil, fmt.Errorf("payload: bsdiff of puff streams: %w", err)
	}
	streams, err := splitRawPatch(c.raw.Bytes())
	if err != nil {
		return nil, err
	}
	bz, err := recompress(&c.bz, streams, bsdiffBZ2, len(dstPuff))
	if err != nil {
		return nil, err
	}
	br, err := recompress(&c.br, streams, bsdiffBrotli, len(dstPuff))
	if err != nil {
		return nil, err
	}
	p.Bsdiff = bz
	if len(br) < len(bz) {
		p.Bsdiff = br
	}
	return p.Encode(), nil
}

// puffSide puffs data's deflate streams into s and returns the puff
// stream; false when it has none, or when its puff does not huff back to
// data (a guard: the applier must rebuild it bit for bit).
func puffSide(data []byte, s *puff.StreamInfo) ([]byte, bool) {
	defl := puff.Locate(data, puffOpLimit)
	if len(defl) == 0 {
		return nil, false
	}
	pf, puffs, err := puff.Puff(data, defl, puffOpLimit)
	if err != nil {
		return nil, false
	}
	back := make([]byte, len(data))
	if err := puff.Huff(pf, defl, puffs, back); err != nil || !bytes.Equal(back, data) {
		return nil, false
	}
	*s = puff.StreamInfo{Deflates: defl, Puffs: puffs, PuffLength: uint64(len(pf))}
	return pf, true
}

// markDeflateFiles makes the new data of the added files that start like
// a gzip, zip or PNG file changed blocks again: each such file becomes an
// added file's job (cutJobs), joined with the others (joinAdded) in jobs
// where PUFFDIFF is tried; xz of the same blocks rarely beats it there.
func (g *deltaGen) markDeflateFiles(class []opClass) {
	first := map[int]uint32{}
	for b, ref := range g.files {
		if ref.old == nil && ref.idx == 0 {
			first[ref.file] = b
		}
	}
	deflate := map[int]bool{}
	for f, b := range first {
		var head [4]byte
		if _, err := g.o.New.ReadAt(head[:], int64(b)*blockSize); err == nil {
			deflate[f] = bytes.HasPrefix(head[:], []byte{0x1F, 0x8B, 8}) || string(head[:]) == "PK\x03\x04" || string(head[:]) == "\x89PNG"
		}
	}
	for b, ref := range g.files {
		if deflate[ref.file] && class[b] == classNovel {
			class[b] = classDiff
		}
	}
}
