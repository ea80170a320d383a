package payload

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/abupdate/update_engine/pkg/payload/metadata"
)

// step is one operation in data order.
type step struct {
	op       *metadata.InstallOperation
	kind     *opKind
	write    bool   // the op targets the applied partition
	file     int    // index into applier.files when the op writes a file partition, else -1
	dstBytes uint64 // sum of dst extents
	dataPos  uint64 // absolute payload offset of its data
}

// plan is a validated metadata, flattened into steps.
type plan struct {
	m         *Metadata
	steps     []step
	part      int // index of the applied partition in m.Partitions
	bs        uint64
	newInfo   *metadata.PartitionInfo
	dataEnd   uint64 // blob offset after the last op's data
	signedEnd uint64 // absolute offset where the signed bytes end
	// firstFile is the index of the first step that writes a file
	// partition (len(steps) when none): checkpoints stop before it, so a
	// resume writes every file from its start.
	firstFile int
}

// emits reports whether the step's output is written (to the target or a
// file).
func (s *step) emits() bool { return s.write || s.file >= 0 }

type extent struct{ start, end uint64 }

// MaxOpBytes bounds one operation's data and output, which are held in
// memory: generators split at 1-2 MiB, so this only stops hostile
// manifests.
const MaxOpBytes = 64 << 20

// newPlan validates everything that can be validated before the first
// write.
func newPlan(m *Metadata, o *Options) (*plan, error) {
	p := &plan{m: m, bs: uint64(m.BlockSize), part: -1}
	limit, err := p.choosePartition(o)
	if err != nil {
		return nil, err
	}
	var dsts []extent
	var pos uint64 // blob offset of the next op's data
	for pi, pt := range m.Partitions {
		for i, op := range pt.Ops {
			where := fmt.Sprintf("partition %q op %d", pt.Name, i)
			s, err := p.newStep(op, pi == p.part, limit, where, o)
			if err != nil {
				return nil, err
			}
			if err := p.placeData(&s, &pos, where); err != nil {
				return nil, err
			}
			if err := p.checkSource(&s, where, o); err != nil {
				return nil, err
			}
			if s.write {
				dsts = appendDsts(dsts, op)
			}
			p.steps = append(p.steps, s)
		}
	}
	p.dataEnd = pos
	p.firstFile = len(p.steps)
	if err := p.checkTail(o); err != nil {
		return nil, err
	}
	if err := checkOverlaps(dsts); err != nil {
		return nil, err
	}
	return p, nil
}

// choosePartition finds the applied partition (Options.Partition, else
// "root" or the only one), checks it against the options and returns the
// target's size in blocks (no limit when unknown).
func (p *plan) choosePartition(o *Options) (uint64, error) {
	m := p.m
	want := o.Partition
	for i, pt := range m.Partitions {
		if (want == "" && (pt.Name == "root" || len(m.Partitions) == 1)) || (want != "" && pt.Name == want) {
			p.part = i
			break
		}
	}
	if p.part < 0 {
		return 0, fmt.Errorf("%w: no partition %q in payload", ErrInvalidManifest, want)
	}
	if err := checkVersion(m.Partitions[p.part], o); err != nil {
		return 0, err
	}
	if o.Direct && p.bs%4096 != 0 {
		return 0, fmt.Errorf("%w: block size %d cannot be written with O_DIRECT", ErrInvalidManifest, p.bs)
	}
	limit := ^uint64(0)
	if o.TargetSize > 0 {
		limit = uint64(o.TargetSize) / p.bs
	}
	p.newInfo = m.Partitions[p.part].NewInfo
	if p.newInfo != nil && o.TargetSize > 0 && p.newInfo.GetSize() > uint64(o.TargetSize) {
		return 0, fmt.Errorf("%w: new partition size %d > target size %d", ErrInvalidManifest, p.newInfo.GetSize(), o.TargetSize)
	}
	return limit, nil
}

// newStep checks one operation on its own: its type, its dst extents
// (inside limit blocks when write) and its data length.
func (p *plan) newStep(op *metadata.InstallOperation, write bool, limit uint64, where string, o *Options) (step, error) {
	k := opKinds[op.GetType()]
	if k == nil || (k.extension && o.Strict) {
		return step{}, fmt.Errorf("%w: %s: %v", ErrUnknownOperation, where, op.GetType())
	}
	s := step{op: op, kind: k, write: write, file: -1}
	for _, e := range op.DstExtents {
		n := e.GetNumBlocks()
		if n == 0 || n > 1<<40 {
			return s, fmt.Errorf("%w: %s: dst extent of %d blocks", ErrInvalidManifest, where, n)
		}
		s.dstBytes += n * p.bs
		if e.GetStartBlock() == SparseHole {
			continue
		}
		if end := e.GetStartBlock() + n; end < n || (s.write && end > limit) {
			return s, fmt.Errorf("%w: %s: dst extent [%d,+%d) outside the partition (%d blocks)", ErrInvalidManifest, where, e.GetStartBlock(), n, limit)
		}
	}
	if s.dstBytes == 0 || (s.write && s.dstBytes > MaxOpBytes) {
		return s, fmt.Errorf("%w: %s: %d dst bytes", ErrInvalidManifest, where, s.dstBytes)
	}
	if op.DstLength != nil && op.GetDstLength() > s.dstBytes {
		return s, fmt.Errorf("%w: %s: dst_length %d > extents %d", ErrInvalidManifest, where, op.GetDstLength(), s.dstBytes)
	}
	return s, p.checkDataLength(&s, where)
}

// checkDataLength checks that the op carries data exactly when its type
// does, and no more than its type allows.
func (p *plan) checkDataLength(s *step, where string) error {
	k, dl := s.kind, s.op.GetDataLength()
	switch {
	case k.data && dl == 0:
		return fmt.Errorf("%w: %s: %v without data", ErrInvalidManifest, where, s.op.GetType())
	case !k.data && dl != 0:
		return fmt.Errorf("%w: %s: %v with %d data bytes", ErrInvalidManifest, where, s.op.GetType(), dl)
	case k.inPlace && (dl > s.dstBytes || s.dstBytes-dl >= p.bs):
		return fmt.Errorf("%w: %s: %d data bytes for %d dst bytes", ErrInvalidManifest, where, dl, s.dstBytes)
	case k.data && dl > MaxOpBytes:
		return fmt.Errorf("%w: %s: %d data bytes", ErrInvalidManifest, where, dl)
	}
	return nil
}

// checkSource checks a source op: SOURCE_COPY reads as many bytes as it
// writes, and the applied partition's source ops need Options.Source.
func (p *plan) checkSource(s *step, where string, o *Options) error {
	if !s.kind.source {
		return nil
	}
	var sb uint64
	for _, e := range s.op.SrcExtents {
		sb += e.GetNumBlocks() * p.bs
	}
	if sb != s.dstBytes && s.op.GetType() == OpSourceCopy {
		return fmt.Errorf("%w: %s: %d source bytes for %d dst bytes", ErrInvalidManifest, where, sb, s.dstBytes)
	}
	if s.write && o.Source == nil {
		return fmt.Errorf("%w: %s", ErrNoSource, where)
	}
	return nil
}

// placeData checks that the op's data follows the previous op's (*pos)
// with a hash, and places it.
func (p *plan) placeData(s *step, pos *uint64, where string) error {
	dl := s.op.GetDataLength()
	if dl == 0 {
		return nil
	}
	if s.op.GetDataOffset() != *pos {
		return fmt.Errorf("%w: %s: data_offset %d, expected %d (not sequential)", ErrInvalidManifest, where, s.op.GetDataOffset(), *pos)
	}
	if len(s.op.GetDataSha256Hash()) == 0 {
		return fmt.Errorf("%w: %s", ErrOperationHashMissing, where)
	}
	s.dataPos = p.m.DataStart() + *pos
	*pos += dl
	return nil
}

// appendDsts adds op's dst extents (not sparse holes) to dsts.
func appendDsts(dsts []extent, op *metadata.InstallOperation) []extent {
	for _, e := range op.DstExtents {
		if e.GetStartBlock() != SparseHole {
			dsts = append(dsts, extent{e.GetStartBlock(), e.GetStartBlock() + e.GetNumBlocks()})
		}
	}
	return dsts
}

// checkTail checks what follows the data: the signatures' place and
// size, and the payload's size against Options.ExpectedSize.
func (p *plan) checkTail(o *Options) error {
	m, pos := p.m, p.dataEnd
	if m.SignaturesSize > 0 && m.SignaturesOffset != pos {
		return fmt.Errorf("%w: signatures_offset %d, data ends at %d", ErrInvalidManifest, m.SignaturesOffset, pos)
	}
	if m.SignaturesSize > 1<<20 {
		return fmt.Errorf("%w: signatures_size %d", ErrInvalidManifest, m.SignaturesSize)
	}
	if len(o.Keys) > 0 && m.SignaturesSize == 0 {
		return ErrSignatureMissing
	}
	p.signedEnd = m.DataStart() + pos
	if o.ExpectedSize > 0 && m.Size() != uint64(o.ExpectedSize) {
		return fmt.Errorf("%w: manifest declares %d bytes, expected %d", ErrTruncated, m.Size(), o.ExpectedSize)
	}
	return nil
}

// checkVersion compares the version the payload carries for the applied
// partition with the offered one (Options.Version, RequireVersion).
func checkVersion(pt Partition, o *Options) error {
	switch {
	case pt.Version == "" && o.RequireVersion:
		return fmt.Errorf("%w: partition %q has none, and the offered version %q cannot be confirmed", ErrVersionMissing, pt.Name, o.Version)
	case pt.Version != "" && o.Version != "" && pt.Version != o.Version:
		return fmt.Errorf("%w: the payload is version %q, offered as %q", ErrVersionMismatch, pt.Version, o.Version)
	}
	return nil
}

// bindFile makes partition pi's operations write file fi (Options.Files),
// after checking what a file partition needs: a new_info (the file's size
// and hash), destination extents inside that size, no overlaps, and no
// source operations (a file has no old copy to read).
func (p *plan) bindFile(pi, fi int) error {
	pt := p.m.Partitions[pi]
	if pt.NewInfo == nil {
		return fmt.Errorf("%w: partition %q: a file without new_info", ErrInvalidManifest, pt.Name)
	}
	limit := (pt.NewInfo.GetSize() + p.bs - 1) / p.bs
	var dsts []extent
	first := -1
	for i := range p.steps {
		s := &p.steps[i]
		if !p.inPartition(i, pi) {
			continue
		}
		if s.kind.source {
			return fmt.Errorf("%w: partition %q: %v", ErrNoSource, pt.Name, s.op.GetType())
		}
		if s.dstBytes > MaxOpBytes {
			return fmt.Errorf("%w: partition %q: %d dst bytes", ErrInvalidManifest, pt.Name, s.dstBytes)
		}
		for _, e := range s.op.DstExtents {
			if e.GetStartBlock() == SparseHole {
				continue
			}
			end := e.GetStartBlock() + e.GetNumBlocks()
			if end < e.GetNumBlocks() || end > limit {
				return fmt.Errorf("%w: partition %q: dst extent [%d,+%d) outside the file (%d blocks)", ErrInvalidManifest, pt.Name, e.GetStartBlock(), e.GetNumBlocks(), limit)
			}
			dsts = append(dsts, extent{e.GetStartBlock(), end})
		}
		s.file = fi
		if first < 0 {
			first = i
		}
	}
	if err := checkOverlaps(dsts); err != nil {
		return fmt.Errorf("partition %q: %w", pt.Name, err)
	}
	if first >= 0 {
		p.firstFile = min(p.firstFile, first)
	}
	return nil
}

// inPartition reports whether step i belongs to partition pi (steps are
// the partitions' operations, in order).
func (p *plan) inPartition(i, pi int) bool {
	start := 0
	for k := range pi {
		start += len(p.m.Partitions[k].Ops)
	}
	return i >= start && i < start+len(p.m.Partitions[pi].Ops)
}

// checkOverlaps fails when two destination extents overlap.
func checkOverlaps(dsts []extent) error {
	slices.SortFunc(dsts, func(a, b extent) int { return cmp.Compare(a.start, b.start) })
	for i := 1; i < len(dsts); i++ {
		if dsts[i].start < dsts[i-1].end {
			return fmt.Errorf("%w: dst extents overlap at block %d", ErrInvalidManifest, dsts[i].start)
		}
	}
	return nil
}
