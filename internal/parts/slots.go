package parts

import (
	"context"

	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/update"
	"github.com/abupdate/update_engine/pkg/cgroup"
)

// DiskSlots adapts *slot.Disk to the engine's Slots; writes to the
// passive slot go through Limiter's cgroup when it is set.
type DiskSlots struct {
	*slot.Disk
	Limiter *cgroup.Limiter // nil = unthrottled
}

// limitedTarget throttles writes; reads (the payload's read-back of the new
// partition) go straight to the slot.
type limitedTarget struct {
	*cgroup.Writer
	slot *slot.Writer
}

func (t limitedTarget) Direct() bool { return t.slot.Direct() }

func (t limitedTarget) ReadAt(p []byte, off int64) (int, error) { return t.slot.ReadAt(p, off) }

// Attrs reads both slots' GPT boot attributes, by slot name.
func (d DiskSlots) Attrs(ctx context.Context) (map[string]update.SlotAttrs, error) {
	m, err := d.Disk.Attrs(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]update.SlotAttrs, len(m))
	for k, a := range m {
		out[k] = update.SlotAttrs(a)
	}
	return out, nil
}

// OpenPassive opens the passive slot for writing, throttled by Limiter.
func (d DiskSlots) OpenPassive(ctx context.Context) (update.Target, error) {
	w, err := d.Disk.OpenPassive(ctx)
	if err != nil {
		return nil, err
	}
	if d.Limiter == nil {
		return w, nil
	}
	return limitedTarget{Writer: d.Limiter.WriterAt(w), slot: w}, nil
}
