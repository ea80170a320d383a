package payload

import (
	"fmt"
	"slices"

	"github.com/abupdate/update_engine/pkg/payload/metadata"
)

// step is one operation in data order.
type step struct {
	op       *metadata.InstallOperation
	kind     *opKind
	write    bool   // the op targets the applied partition
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
}

type extent struct{ start, end uint64 }

// MaxOpBytes bounds one operation's data and output, which are held in
// memory: generators split at 1-2 MiB, so this only stops hostile
// manifests.
const MaxOpBytes = 64 << 20

// newPlan validates everything that can be validated before the first
// write.
func newPlan(m *Metadata, o *Options) (*plan, error) {
	p := &plan{m: m, bs: uint64(m.BlockSize), part: -1}
	want := o.Partition
	for i, pt := range m.Partitions {
		if (want == "" && (pt.Name == "root" || len(m.Partitions) == 1)) || (want != "" && pt.Name == want) {
			p.part = i
			break
		}
	}
	if p.part < 0 {
		return nil, fmt.Errorf("%w: no partition %q in payload", ErrInvalidManifest, want)
	}
	if err := checkVersion(m.Partitions[p.part], o); err != nil {
		return nil, err
	}
	if o.Direct && p.bs%4096 != 0 {
		return nil, fmt.Errorf("%w: block size %d cannot be written with O_DIRECT", ErrInvalidManifest, p.bs)
	}
	limit := ^uint64(0)
	if o.TargetSize > 0 {
		limit = uint64(o.TargetSize) / p.bs
	}
	p.newInfo = m.Partitions[p.part].NewInfo
	if p.newInfo != nil && o.TargetSize > 0 && p.newInfo.GetSize() > uint64(o.TargetSize) {
		return nil, fmt.Errorf("%w: new partition size %d > target size %d", ErrInvalidManifest, p.newInfo.GetSize(), o.TargetSize)
	}
	var dsts []extent
	var pos uint64
	for pi, pt := range m.Partitions {
		for i, op := range pt.Ops {
			where := fmt.Sprintf("partition %q op %d", pt.Name, i)
			k := opKinds[op.GetType()]
			if k == nil || (k.extension && o.Strict) {
				return nil, fmt.Errorf("%w: %s: %v", ErrUnknownOperation, where, op.GetType())
			}
			s := step{op: op, kind: k, write: pi == p.part}
			for _, e := range op.DstExtents {
				n := e.GetNumBlocks()
				if n == 0 || n > 1<<40 {
					return nil, fmt.Errorf("%w: %s: dst extent of %d blocks", ErrInvalidManifest, where, n)
				}
				s.dstBytes += n * p.bs
				if e.GetStartBlock() == SparseHole {
					continue
				}
				end := e.GetStartBlock() + n
				if end < n || (s.write && end > limit) {
					return nil, fmt.Errorf("%w: %s: dst extent [%d,+%d) outside the partition (%d blocks)", ErrInvalidManifest, where, e.GetStartBlock(), n, limit)
				}
				if s.write {
					dsts = append(dsts, extent{e.GetStartBlock(), end})
				}
			}
			if s.dstBytes == 0 || (s.write && s.dstBytes > MaxOpBytes) {
				return nil, fmt.Errorf("%w: %s: %d dst bytes", ErrInvalidManifest, where, s.dstBytes)
			}
			if op.DstLength != nil && op.GetDstLength() > s.dstBytes {
				return nil, fmt.Errorf("%w: %s: dst_length %d > extents %d", ErrInvalidManifest, where, op.GetDstLength(), s.dstBytes)
			}
			dl := op.GetDataLength()
			switch {
			case k.data && dl == 0:
				return nil, fmt.Errorf("%w: %s: %v without data", ErrInvalidManifest, where, op.GetType())
			case !k.data && dl != 0:
				return nil, fmt.Errorf("%w: %s: %v with %d data bytes", ErrInvalidManifest, where, op.GetType(), dl)
			case k.inPlace && (dl > s.dstBytes || s.dstBytes-dl >= p.bs):
				return nil, fmt.Errorf("%w: %s: %d data bytes for %d dst bytes", ErrInvalidManifest, where, dl, s.dstBytes)
			case k.data && dl > MaxOpBytes:
				return nil, fmt.Errorf("%w: %s: %d data bytes", ErrInvalidManifest, where, dl)
			}
			if dl > 0 {
				if op.GetDataOffset() != pos {
					return nil, fmt.Errorf("%w: %s: data_offset %d, expected %d (not sequential)", ErrInvalidManifest, where, op.GetDataOffset(), pos)
				}
				if len(op.GetDataSha256Hash()) == 0 {
					return nil, fmt.Errorf("%w: %s", ErrOperationHashMissing, where)
				}
				s.dataPos = m.DataStart() + pos
				pos += dl
			}
			if k.source {
				var sb uint64
				for _, e := range op.SrcExtents {
					sb += e.GetNumBlocks() * p.bs
				}
				if sb != s.dstBytes && op.GetType() == OpSourceCopy {
					return nil, fmt.Errorf("%w: %s: %d source bytes for %d dst bytes", ErrInvalidManifest, where, sb, s.dstBytes)
				}
				if s.write && o.Source == nil {
					return nil, fmt.Errorf("%w: %s", ErrNoSource, where)
				}
			}
			p.steps = append(p.steps, s)
		}
	}
	p.dataEnd = pos
	if m.SignaturesSize > 0 && m.SignaturesOffset != pos {
		return nil, fmt.Errorf("%w: signatures_offset %d, data ends at %d", ErrInvalidManifest, m.SignaturesOffset, pos)
	}
	if m.SignaturesSize > 1<<20 {
		return nil, fmt.Errorf("%w: signatures_size %d", ErrInvalidManifest, m.SignaturesSize)
	}
	if len(o.Keys) > 0 && m.SignaturesSize == 0 {
		return nil, ErrSignatureMissing
	}
	p.signedEnd = m.DataStart() + pos
	if o.ExpectedSize > 0 && m.Size() != uint64(o.ExpectedSize) {
		return nil, fmt.Errorf("%w: manifest declares %d bytes, expected %d", ErrTruncated, m.Size(), o.ExpectedSize)
	}
	slices.SortFunc(dsts, func(a, b extent) int {
		if a.start < b.start {
			return -1
		} else if a.start > b.start {
			return 1
		}
		return 0
	})
	for i := 1; i < len(dsts); i++ {
		if dsts[i].start < dsts[i-1].end {
			return nil, fmt.Errorf("%w: dst extents overlap at block %d", ErrInvalidManifest, dsts[i].start)
		}
	}
	return p, nil
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
