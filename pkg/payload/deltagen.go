package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"

	"github.com/abupdate/update_engine/pkg/payload/metadata"
	"google.golang.org/protobuf/proto"
)

// Delta generation (GenerateDelta) in six steps:
//
//  1. One pass over each image (the two run concurrently): the SHA-256 of
//     the image, of every 4 KiB block, and, for the old image, content
//     defined anchors (a gear rolling hash over the last 64 bytes whose top
//     9 bits are zero, about one per 512 bytes) with their offsets, sorted
//     into an index.
//  2. Every new block is classified: zero (ZERO), equal to some old block
//     (SOURCE_COPY; found by block hash anywhere in the old image,
//     preferring the block after the previous copy's source, then the same
//     offset, then the lowest), or changed.
//  3. Changed blocks with no old anchor within novelSpan/2 blocks are new
//     data (added files): nothing in the old image shortens them. Unless
//     the images are ext4 files that debugfs reads and the block belongs
//     to a file with an old version (same path): then it is diffed against
//     that version (deltafiles.go). An added file that starts like a
//     gzip, zip or PNG file is changed too (markDeflateFiles, step 5).
//  4. Short runs of copied blocks between changed blocks become changed
//     (absorbCopies). Runs of one class (but new data) become operations
//     of at most 2 MiB of dst; the changed blocks of an added file (no
//     old version, step 3) make an operation of their own.
//  5. Workers (all cores) turn each changed run into the smallest of
//     REPLACE_XZ, SOURCE_BSDIFF (BSDF2, bzip2), BROTLI_BSDIFF and, when
//     the run holds deflate streams, PUFFDIFF (delta_puff.go). The
//     bsdiff source is the old version of the blocks' files (step 3), and
//     is found by content too, so a file that moved and changed is diffed
//     against its old version: the run's anchors are looked up
//     in the old index, the old blocks they hit are ranked by hits, and up
//     to 8 MiB of old blocks around the best ones (plus the old blocks at
//     the same offset) become the operation's src extents, in old order,
//     with gaps of up to srcGapFill blocks filled. An added file's diff is
//     kept only if it beats xz by a margin (addedDiffGain), or if it holds
//     deflate streams; the kept ones are diffed again in groups
//     (joinAdded), where PUFFDIFF is tried.
//  6. The runs that no diff shortened join the new data, and all of it,
//     in block order, goes into REPLACE_XZ operations of up to 12 MiB
//     (its xz dictionary then spans many added files; on the 1 GiB bench
//     pair the delta went from 2 752 582 to 2 492 148 B with 8 MiB ones).
//     These operations come last in the manifest. 12 MiB, not more, for
//     the applier's memory (two of them and their data set its budget):
//     on the upgrade pair 8 and 12 MiB made the delta 6 029 645 and
//     6 023 731 B, and the apply's peak RSS (three workers) 43 and
//     52–58 MiB; 16 MiB ones (absorbRun at 32) 66 MiB.
//
// Memory: the index (16 bytes per anchor, ~32 MiB per GiB of old image),
// the block hashes (~84 bytes per block) and, per worker, one operation's
// old (≤ 8 MiB, a little more with gaps filled) and new (≤ 2 MiB) data
// with bsdiff's suffix array, or
// 12 MiB of new data and the xz program compressing it (~140 MiB with its
// 12 MiB dictionary). The output is deterministic: the workers'
// results are assembled in order and every choice breaks ties by
// position.

const (
	deltaOpBlocks  = 512  // dst blocks per operation (2 MiB)
	deltaSrcBlocks = 2048 // source blocks per bsdiff operation (8 MiB)
	novelBlk       = 3072 // dst blocks per operation of new data (12 MiB)
	anchorBits     = 9    // one anchor per 2^9 bytes on average
	anchorMinGap   = 64   // bytes between anchors, against repetitive data
	anchorMaxFreq  = 16   // anchors occurring more often in old are ignored
	hitRadius      = 16   // blocks of context taken around a hit
)

// gear is the rolling hash table: fixed, so output is deterministic.
var gear = func() (t [256]uint64) {
	x := uint64(0x9E3779B97F4A7C15)
	for i := range t {
		x += 0x9E3779B97F4A7C15
		z := x
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		t[i] = z ^ (z >> 31)
	}
	return
}()

// anchor is an anchor hash and the offset of the byte after its window.
type anchor struct {
	h   uint64
	pos int64
}

// anchorScanner finds anchors in a stream fed in pieces.
type anchorScanner struct {
	h    uint64
	last int64 // position of the last anchor
	pos  int64
}

func newAnchorScanner(start int64) *anchorScanner {
	return &anchorScanner{pos: start, last: start - anchorMinGap}
}

// scan feeds b; emit is called with each anchor.
func (s *anchorScanner) scan(b []byte, emit func(h uint64, pos int64)) {
	h, pos := s.h, s.pos
	for _, c := range b {
		h = h<<1 + gear[c]
		pos++
		if h>>(64-anchorBits) == 0 && pos-s.last >= anchorMinGap {
			s.last = pos
			emit(h, pos)
		}
	}
	s.h, s.pos = h, pos
}

type blockKey [sha256.Size]byte

// imageScan is the result of one pass over an image.
type imageScan struct {
	hash    []byte     // SHA-256 of the image's size bytes
	keys    []blockKey // per block (the last one zero-padded)
	zero    []bool     // per block: all zeros
	anchors []anchor   // old image only, sorted
}

// scanImage reads r once. blocks is the number of blocks to hash (full ones
// for old, all for new); anchors are collected when withAnchors.
func scanImage(ctx context.Context, r io.ReaderAt, size int64, blocks int, withAnchors bool) (*imageScan, error) {
	s := &imageScan{keys: make([]blockKey, blocks), zero: make([]bool, blocks)}
	whole := sha256.New()
	buf := make([]byte, 1<<20)
	as := newAnchorScanner(0)
	var zeroBlock [blockSize]byte
	for pos := int64(0); pos < size; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b := buf[:min(int64(len(buf)), size-pos)]
		if n, err := r.ReadAt(b, pos); n < len(b) {
			return nil, fmt.Errorf("payload: read image at %d: %w", pos, err)
		}
		whole.Write(b)
		for off := 0; off < len(b); off += blockSize {
			i := int((pos + int64(off)) / blockSize)
			if i >= blocks {
				break
			}
			blk := b[off:min(off+blockSize, len(b))]
			if len(blk) < blockSize {
				var pad [blockSize]byte
				copy(pad[:], blk)
				blk = pad[:]
			}
			s.zero[i] = bytes.Equal(blk, zeroBlock[:])
			s.keys[i] = sha256.Sum256(blk)
		}
		if withAnchors {
			as.scan(b, func(h uint64, p int64) {
				if blk := int((p - 1) / blockSize); blk < blocks && !s.zero[blk] {
					s.anchors = append(s.anchors, anchor{h, p})
				}
			})
		}
		pos += int64(len(b))
	}
	s.hash = whole.Sum(nil)
	slices.SortFunc(s.anchors, func(a, b anchor) int {
		if a.h != b.h {
			if a.h < b.h {
				return -1
			}
			return 1
		}
		return int(a.pos - b.pos)
	})
	return s, nil
}

// lookup returns the old anchors with hash h, or nil when h is too common.
func (s *imageScan) lookup(h uint64) []anchor {
	i, _ := slices.BinarySearchFunc(s.anchors, h, func(a anchor, h uint64) int {
		if a.h < h {
			return -1
		} else if a.h > h {
			return 1
		}
		return 0
	})
	j := i
	for j < len(s.anchors) && s.anchors[j].h == h {
		j++
	}
	if j-i > anchorMaxFreq {
		return nil
	}
	return s.anchors[i:j]
}

type opClass uint8

const (
	classZero opClass = iota
	classCopy
	classDiff
	classNovel // changed, and nothing like it in the old image: REPLACE_XZ in large operations
	numClasses
)

// deltaJob is one operation to produce: the new blocks dst (ascending,
// possibly far apart: small changes are grouped into one operation so that
// they share a manifest entry and a compression context).
type deltaJob struct {
	class opClass
	dst   []uint32
	src   []uint32 // classCopy: the old block of each dst block; classDiff: the source, if chosen
	added bool     // the changed blocks of one added file (deltafiles.go)
	puffs bool     // set by the worker: the blocks hold deflate streams to puff

	op   *metadata.InstallOperation
	data []byte
	err  error
	done chan struct{}
}

type deltaGen struct {
	o        GenerateOptions
	old, nw  *imageScan
	files    map[uint32]fileRef // changed new blocks in files with an old version (deltafiles.go)
	filesErr error              // why files is nil
	copySrc  map[uint32]uint32  // copied blocks that diffs write: their old blocks (absorbCopies)
	oldBlks  int
	newBlks  int
	chunkBlk int
}

// GenerateDelta writes a delta payload turning o.Old into o.New (major
// version 2; see the comment at the top of deltagen.go for the method).
// The minor version is the lowest that covers the operations used (3 with
// source hashes and REPLACE_XZ, 4 with ZERO or BROTLI_BSDIFF, 5 with
// PUFFDIFF).
func GenerateDelta(ctx context.Context, w io.Writer, o GenerateOptions) (*GenerateResult, error) {
	if o.Old == nil || o.New == nil {
		return nil, fmt.Errorf("%w: a delta needs an old and a new image", ErrGenerate)
	}
	if o.Major == 1 {
		return nil, fmt.Errorf("%w: delta payloads are major version 2", ErrGenerate)
	}
	chunk := o.ChunkSize
	if chunk == 0 {
		chunk = deltaOpBlocks * blockSize
	}
	if chunk%blockSize != 0 || chunk <= 0 || chunk > 8<<20 {
		return nil, fmt.Errorf("%w: chunk size %d", ErrGenerate, chunk)
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	g := &deltaGen{o: o, oldBlks: int(o.OldSize / blockSize),
		newBlks: int((o.NewSize + blockSize - 1) / blockSize), chunkBlk: chunk / blockSize}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := g.scan(ctx); err != nil {
		return nil, err
	}
	jobs, novel, err := g.plan(ctx)
	if err != nil {
		return nil, err
	}

	sink, err := newOpSink(o)
	if err != nil {
		return nil, err
	}
	defer sink.close()

	spec := &Spec{Major: 2, Partition: o.Partition, Version: o.Version,
		NewInfo: &metadata.PartitionInfo{Size: proto.Uint64(uint64(o.NewSize)), Hash: g.nw.hash},
		OldInfo: &metadata.PartitionInfo{Size: proto.Uint64(uint64(o.OldSize)), Hash: g.old.hash}}
	res := &GenerateResult{OpCounts: map[string]int{}, Delta: true, NoFileMap: g.filesErr}
	emit := func(j *deltaJob) error {
		if err := sink.add(res, j.op, j.data); err != nil {
			return err
		}
		spec.Ops = append(spec.Ops, j.op)
		spec.MinorVersion = max(spec.MinorVersion, minorFor(j.op.GetType()))
		return nil
	}
	if err := g.runAll(ctx, jobs, novel, workers, emit); err != nil {
		return nil, err
	}
	if spec.MinorVersion >= 4 {
		// src_length and dst_length belong to SOURCE_BSDIFF of minor
		// version 3 only; later minors must not carry them (AOSP paycheck).
		for _, op := range spec.Ops {
			op.SrcLength, op.DstLength = nil, nil
		}
	}
	return sink.write(w, spec, res)
}

// runAll runs the jobs and emits their operations, then those of the new
// data.
func (g *deltaGen) runAll(ctx context.Context, jobs []*deltaJob, novel []uint32, workers int, emit func(*deltaJob) error) error {
	// Changed runs that no diff shortened are new data after all: they
	// join the new data's large operations (their xz dictionary then
	// spans similar files far apart: on the 1 GiB bench pair, 1 286 KB
	// of 2 MiB operations became 993 KB).
	// An added file holding deflate streams is kept even when xz beat its
	// diff: its PUFFDIFF is tried in the group (on the upgrade pair, most
	// small gzip, jar and PNG files' PUFFDIFFs lost to xz alone).
	var kept []*deltaJob
	route := func(j *deltaJob) error {
		switch {
		case j.class == classDiff && isReplace(j.op.GetType()) && !(j.added && j.puffs):
			novel = append(novel, j.dst...)
		case j.added:
			kept = append(kept, &deltaJob{dst: j.dst, src: extentBlocks(j.op.GetSrcExtents())})
		default:
			return emit(j)
		}
		return nil
	}
	if err := g.runJobs(ctx, jobs, workers, route); err != nil {
		return err
	}
	if err := g.runJobs(ctx, g.joinAdded(kept), workers, route); err != nil {
		return err
	}
	slices.Sort(novel)
	return g.runJobs(ctx, cutBlocks(novel, classNovel, novelBlk), workers, emit)
}

// joinAdded groups the added files whose diffs were kept (dst and src
// blocks), in block order, into jobs of at most chunkBlk dst blocks
// diffed against the union of their sources (at most deltaSrcBlocks):
// one operation per file cost a manifest entry and a source hash each,
// and the applier holds buffers for as many small operations as its
// memory budget lets in flight.
func (g *deltaGen) joinAdded(kept []*deltaJob) []*deltaJob {
	var jobs []*deltaJob
	var cur *deltaJob
	src := map[uint32]bool{}
	flush := func() {
		if cur != nil {
			// Not nil when empty: a group of added files whose diffs
			// all lost (kept for their deflate streams) has no source
			// worth the anchors' (diff), and gets a PUFFDIFF from nothing.
			cur.src = append([]uint32{}, slices.Sorted(maps.Keys(src))...)
			jobs = append(jobs, cur)
			cur = nil
			clear(src)
		}
	}
	for _, k := range kept {
		grown := len(src)
		for _, b := range k.src {
			if !src[b] {
				grown++
			}
		}
		if cur != nil && (len(cur.dst)+len(k.dst) > g.chunkBlk || grown > deltaSrcBlocks) {
			flush()
		}
		if cur == nil {
			cur = &deltaJob{class: classDiff, done: make(chan struct{})}
		}
		cur.dst = append(cur.dst, k.dst...)
		for _, b := range k.src {
			src[b] = true
		}
	}
	flush()
	return jobs
}

// extentBlocks lists the blocks of exts.
func extentBlocks(exts []*metadata.Extent) []uint32 {
	var bl []uint32
	for _, e := range exts {
		for b := e.GetStartBlock(); b < e.GetStartBlock()+e.GetNumBlocks(); b++ {
			bl = append(bl, uint32(b))
		}
	}
	return bl
}

// minorFor is the lowest minor version that has op type t (with source
// hashes, which every source operation here carries: minor 3).
func minorFor(t metadata.InstallOperation_Type) uint32 {
	switch t {
	case OpZero, OpDiscard, OpBrotliBsdiff:
		return 4
	case OpPuffdiff:
		return 5
	default:
		return 3
	}
}

func (g *deltaGen) scan(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() {
		var err error
		g.old, err = scanImage(ctx, g.o.Old, g.o.OldSize, g.oldBlks, true)
		errc <- err
	}()
	var err error
	g.nw, err = scanImage(ctx, g.o.New, g.o.NewSize, g.newBlks, false)
	if oerr := <-errc; oerr != nil {
		return fmt.Errorf("payload: old image: %w", oerr)
	}
	if err != nil {
		return fmt.Errorf("payload: new image: %w", err)
	}
	return nil
}

// plan classifies the new blocks and cuts runs into jobs; the blocks of
// new data are returned apart, in order. A changed block of a file with an
// old version (deltafiles.go) is diffed even without an anchor near it.
func (g *deltaGen) plan(ctx context.Context) ([]*deltaJob, []uint32, error) {
	class, src := g.classify()
	if err := g.markNovel(ctx, class); err != nil {
		return nil, nil, err
	}
	var changed []uint32
	for i, c := range class {
		if c >= classDiff {
			changed = append(changed, uint32(i))
		}
	}
	g.files, g.filesErr = g.fileMap(ctx, changed)
	g.markDeflateFiles(class)
	var novel []uint32
	for _, b := range changed {
		if g.files[b].old != nil {
			class[b] = classDiff
		}
		if class[b] == classNovel {
			novel = append(novel, b)
		}
	}
	g.absorbCopies(class, src)
	return g.cutJobs(class, src), novel, nil
}

// absorbRun is the longest run of copied blocks between two changed
// blocks that the changed blocks' operation writes too (absorbCopies).
const absorbRun = 64

// absorbCopies makes short runs of copied blocks between two changed
// blocks (not of added files) changed, their old blocks recorded in
// g.copySrc to be part of the diff's source. A run of copies costs a
// source and a destination extent in a SOURCE_COPY operation, and splits
// the bsdiff operation's destination extent in two: ~24 bytes of
// manifest, where bsdiff copies the blocks for a few bytes. On the
// upgrade pair the directories rewritten in place (inode numbers moved)
// are one or two blocks among unchanged ones; absorbing runs of up to 4,
// 8 and 16 blocks made its delta 59, 67 and 71 KB smaller (6 393 KB
// before). With PUFFDIFF and larger copy operations (jobBlocks), runs
// (and srcGapFill) of up to 32, 64 and 128 blocks made it 6 040 554,
// 6 029 645 and 6 031 400 B (6 058 612 at 8), the last with 405 MiB of
// generation RSS.
func (g *deltaGen) absorbCopies(class []opClass, src []uint32) {
	diffable := func(b int) bool {
		ref, ok := g.files[uint32(b)]
		return class[b] == classDiff && !(ok && ref.old == nil)
	}
	g.copySrc = map[uint32]uint32{}
	for i := 0; i < len(class); {
		j := i
		for j < len(class) && class[j] == class[i] {
			j++
		}
		if class[i] == classCopy && j-i <= absorbRun && i > 0 && j < len(class) && diffable(i-1) && diffable(j) {
			for k := i; k < j; k++ {
				class[k] = classDiff
				g.copySrc[uint32(k)] = src[k]
			}
		}
		i = j
	}
}

// runJobs runs jobs on workers and calls emit with each, in order.
func (g *deltaGen) runJobs(ctx context.Context, jobs []*deltaJob, workers int, emit func(*deltaJob) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idx := make(chan int)
	for range workers {
		go func() {
			c := &deltaWorker{g: g}
			for i := range idx {
				j := jobs[i]
				j.op, j.data, j.err = c.run(ctx, j)
				close(j.done)
			}
		}()
	}
	go feedWindow(ctx, len(jobs), 4*workers, func(i int) <-chan struct{} { return jobs[i].done }, idx)
	for _, j := range jobs {
		select {
		case <-j.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if j.err != nil {
			return j.err
		}
		if err := emit(j); err != nil {
			return err
		}
		j.data, j.src, j.dst = nil, nil, nil
	}
	return nil
}

func isReplace(t metadata.InstallOperation_Type) bool {
	return t == OpReplace || t == OpReplaceXZ
}

// cutBlocks cuts blocks into jobs of class c of at most max blocks.
func cutBlocks(blocks []uint32, c opClass, max int) []*deltaJob {
	var jobs []*deltaJob
	for len(blocks) > 0 {
		n := min(len(blocks), max)
		jobs = append(jobs, &deltaJob{class: c, dst: blocks[:n:n], done: make(chan struct{})})
		blocks = blocks[n:]
	}
	return jobs
}

// classify sorts each new block into zero, copy (with its old block in
// src) or changed.
func (g *deltaGen) classify() ([]opClass, []uint32) {
	first := make(map[blockKey]uint32, g.oldBlks)
	for i := g.oldBlks - 1; i >= 0; i-- {
		if !g.old.zero[i] {
			first[g.old.keys[i]] = uint32(i)
		}
	}
	class := make([]opClass, g.newBlks)
	src := make([]uint32, g.newBlks)
	prev := -2
	for i := range g.newBlks {
		k := g.nw.keys[i]
		switch {
		case g.nw.zero[i]:
			class[i] = classZero
			prev = -2
			continue
		case prev+1 >= 0 && prev+1 < g.oldBlks && g.old.keys[prev+1] == k:
			src[i] = uint32(prev + 1)
		case i < g.oldBlks && g.old.keys[i] == k:
			src[i] = uint32(i)
		default:
			s, ok := first[k]
			if !ok {
				class[i] = classDiff
				prev = -2
				continue
			}
			src[i] = s
		}
		class[i] = classCopy
		prev = int(src[i])
	}
	return class, src
}

// novelSpan is the neighbourhood, in blocks, in which a changed block
// must have an anchor found in the old image to be diffed: one without is
// new data (an added file), which bsdiff cannot shorten and which
// compresses better in large REPLACE_XZ operations (the dictionary spans
// many files) than in the 2 MiB ones of diffs.
const novelSpan = 16

// markNovel reads the changed blocks, counts per block the anchors found
// in the old index and reclassifies as novel the changed blocks with none
// within novelSpan/2 blocks either side (among changed blocks).
func (g *deltaGen) markNovel(ctx context.Context, class []opClass) error {
	hits := make([]uint32, g.newBlks)
	buf := make([]byte, 1<<20)
	for i := 0; i < g.newBlks; {
		if class[i] != classDiff {
			i++
			continue
		}
		j := i
		for j < g.newBlks && class[j] == classDiff && j-i < len(buf)/blockSize {
			j++
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		b := buf[:(j-i)*blockSize]
		start := int64(i) * blockSize
		want := min(int64(len(b)), g.o.NewSize-start)
		if n, err := g.o.New.ReadAt(b[:want], start); int64(n) < want {
			return fmt.Errorf("payload: read new image at %d: %w", start, err)
		}
		clear(b[want:])
		newAnchorScanner(start).scan(b, func(h uint64, pos int64) {
			if len(g.old.lookup(h)) > 0 {
				hits[(pos-1)/blockSize]++
			}
		})
		i = j
	}
	for i := range g.newBlks {
		if class[i] != classDiff {
			continue
		}
		found := false
		for k := max(0, i-novelSpan/2); k < min(g.newBlks, i+novelSpan/2+1) && !found; k++ {
			found = class[k] >= classDiff && hits[k] > 0
		}
		if !found {
			class[i] = classNovel
		}
	}
	return nil
}

// cutJobs groups the blocks of each class but new data, in block order,
// into jobs of at most chunkBlk blocks. The changed blocks of each added
// file (deltafiles.go) make a job of their own: diffed with other files,
// an added file made bsdiff emit many short, useless matches, and a job
// whose diff lost to xz took the rewritten files into the new data with
// it. Alone, an added file is diffed against the old files like it, if
// any, and joins the new data when that gains too little (addedDiffGain).
func (g *deltaGen) cutJobs(class []opClass, src []uint32) []*deltaJob {
	var jobs []*deltaJob
	var cur [numClasses + 1]*deltaJob
	for i := range g.newBlks {
		c := class[i]
		if c == classNovel {
			continue
		}
		slot := int(c)
		ref, ok := g.files[uint32(i)]
		added := ok && ref.old == nil && c == classDiff
		if added {
			slot = int(numClasses) // one job per added file
			if j := cur[slot]; j != nil && g.files[j.dst[0]].file != ref.file {
				jobs = append(jobs, j)
				cur[slot] = nil
			}
		}
		j := cur[slot]
		if j == nil {
			j = &deltaJob{class: c, added: added, done: make(chan struct{})}
			cur[slot] = j
		}
		j.dst = append(j.dst, uint32(i))
		if c == classCopy {
			j.src = append(j.src, src[i])
		}
		if len(j.dst) == g.jobBlocks(c) {
			jobs = append(jobs, j)
			cur[slot] = nil
		}
	}
	for _, j := range cur {
		if j != nil {
			jobs = append(jobs, j)
		}
	}
	return jobs
}

// Copies and zeros go into larger operations than diffs: an operation
// costs ~40 bytes of manifest (its type, its source hash, and the extents
// split at its ends), a SOURCE_COPY holds its size in the applier and a
// ZERO nothing. At the default 2 MiB chunk, copies of 8 MiB (as the new
// data's operations were) and zeros of 64 MiB (MaxOpBytes): on the upgrade
// pair 174 SOURCE_COPY operations became 41, 44 ZERO 2, and the manifest
// 63 KB 43 (with absorbRun and srcGapFill at 32).
const (
	copyScale = 4
	zeroScale = 32
)

// jobBlocks is the largest number of dst blocks of a job of class c.
func (g *deltaGen) jobBlocks(c opClass) int {
	switch c {
	case classCopy:
		return copyScale * g.chunkBlk
	case classZero:
		return zeroScale * g.chunkBlk
	}
	return g.chunkBlk
}

func u64(v uint64) *uint64 { return proto.Uint64(v) }

// blockExtents merges a list of block numbers into extents.
func blockExtents(blocks []uint32) []*metadata.Extent {
	var exts []*metadata.Extent
	for i := 0; i < len(blocks); {
		j := i + 1
		for j < len(blocks) && blocks[j] == blocks[j-1]+1 {
			j++
		}
		exts = append(exts, &metadata.Extent{StartBlock: u64(uint64(blocks[i])), NumBlocks: u64(uint64(j - i))})
		i = j
	}
	return exts
}

// deltaWorker holds one worker's buffers.
type deltaWorker struct {
	g            *deltaGen
	newBuf, oldB []byte
	raw, xb, bz  bytes.Buffer
	br           bytes.Buffer
}

func (c *deltaWorker) run(ctx context.Context, j *deltaJob) (*metadata.InstallOperation, []byte, error) {
	op := &metadata.InstallOperation{DstExtents: blockExtents(j.dst)}
	switch j.class {
	case classZero:
		op.Type = OpZero.Enum()
		return op, nil, nil
	case classCopy:
		op.Type = OpSourceCopy.Enum()
		op.SrcExtents = blockExtents(j.src)
		// The source blocks hash like the new blocks (equal contents).
		b, err := c.readNew(j)
		if err != nil {
			return nil, nil, err
		}
		s := sha256.Sum256(b)
		op.SrcSha256Hash = s[:]
		return op, nil, nil
	}
	nw, err := c.readNew(j)
	if err != nil {
		return nil, nil, err
	}
	best, err := c.replace(ctx, nw, op)
	if err != nil {
		return nil, nil, err
	}
	if j.class == classNovel {
		return op, bytes.Clone(best), nil
	}
	return c.diff(ctx, j, nw, op, best)
}
