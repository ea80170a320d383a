package slot

import (
	"context"
	"fmt"
	"os"

	"github.com/abupdate/update_engine/internal/crashpoint"
	"github.com/abupdate/update_engine/pkg/gpt"
)

// update runs one GPT read-repair-modify-write cycle.
func (d *Disk) update(ctx context.Context, fn func(*gpt.Table) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	crashpoint.Hit("gpt " + d.path)
	d.mu.Lock()
	defer d.mu.Unlock()
	g, err := gpt.Open(d.path, os.O_RDWR, d.sectorSize)
	if err != nil {
		return err
	}
	if _, err := g.Update(fn); err != nil {
		g.Close()
		return fmt.Errorf("%s: %w", d.path, err)
	}
	return g.Close()
}

// read reads the GPT without writing.
func (d *Disk) read(ctx context.Context) (*gpt.Table, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g, err := gpt.Open(d.path, os.O_RDONLY, d.sectorSize)
	if err != nil {
		return nil, err
	}
	defer g.Close()
	tab, _, err := g.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.path, err)
	}
	return tab, nil
}

// Repair rewrites whatever the GPT has wrong (a corrupt copy, a backup not
// at the end of a grown disk, a missing protective MBR), as `cgpt repair`
// does before Flatcar's flips, and returns what it found. The flips repair
// on their own; this is for a daemon's start-up and for reporting.
func (d *Disk) Repair(ctx context.Context) (*gpt.Report, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	g, err := gpt.Open(d.path, os.O_RDWR, d.sectorSize)
	if err != nil {
		return nil, err
	}
	rep, err := g.Update(nil)
	if cerr := g.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return rep, fmt.Errorf("%s: %w", d.path, err)
	}
	return rep, nil
}

// MarkPassiveUnbootable clears the passive slot's priority, tries and
// successful bits, so a half-written slot never boots. Call it before the
// first write to the passive slot.
func (d *Disk) MarkPassiveUnbootable(ctx context.Context) error {
	i := d.PassiveSlot().Index
	return d.update(ctx, func(t *gpt.Table) error { return t.MarkBad(i) })
}

// MarkPassiveForTrial flips to the freshly written passive slot for one
// boot attempt: successful=0, tries=1, highest priority (flatcar-postinst).
func (d *Disk) MarkPassiveForTrial(ctx context.Context) error {
	i := d.PassiveSlot().Index
	return d.update(ctx, func(t *gpt.Table) error { return t.MarkForTrial(i) })
}

// MarkBootedGood records a successful boot of the booted slot:
// successful=1, tries=0, highest priority (flatcar-setgoodroot).
func (d *Disk) MarkBootedGood(ctx context.Context) error {
	i := d.BootedSlot().Index
	return d.update(ctx, func(t *gpt.Table) error { return t.MarkGood(i) })
}

// MarkBootedSuccessful records a successful boot of the booted slot
// without changing priorities: successful=1, tries=0. Used while a flipped
// update waits for its reboot, so the booted slot is a good fallback
// without being raised above the update.
func (d *Disk) MarkBootedSuccessful(ctx context.Context) error {
	i := d.BootedSlot().Index
	return d.update(ctx, func(t *gpt.Table) error { return t.MarkSuccessful(i) })
}

// Attrs are one slot's boot attributes.
type Attrs struct {
	Priority, Tries int
	Successful      bool
}

// Attrs reads both slots' boot attributes, by slot name ("A", "B").
func (d *Disk) Attrs(ctx context.Context) (map[string]Attrs, error) {
	tab, err := d.read(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string]Attrs, 2)
	for _, s := range d.slots {
		e := &tab.Entries[s.Index-1]
		m[s.Name] = Attrs{Priority: e.Priority(), Tries: e.Tries(), Successful: e.Successful()}
	}
	return m, nil
}

// RollbackToPassive makes the passive slot boot next, keeping its bits,
// when it holds an image that booted successfully before; otherwise it
// fails with ErrNotBootable.
func (d *Disk) RollbackToPassive(ctx context.Context) error {
	i := d.PassiveSlot().Index
	return d.update(ctx, func(t *gpt.Table) error {
		if e := &t.Entries[i-1]; !e.Successful() || e.Priority() == 0 {
			return fmt.Errorf("%w: %s has priority %d, successful %v", ErrNotBootable, d.PassiveSlot(), e.Priority(), e.Successful())
		}
		return t.Prioritize(i)
	})
}

// CanRollback reports whether the passive slot holds an image that booted
// successfully and is not disabled (priority > 0).
func (d *Disk) CanRollback(ctx context.Context) (bool, error) {
	tab, err := d.read(ctx)
	if err != nil {
		return false, err
	}
	e := &tab.Entries[d.PassiveSlot().Index-1]
	return e.Successful() && e.Priority() > 0, nil
}

// NextBoot names ("A" or "B") the slot the bootloader would pick now,
// without spending a try. It fails with gpt.ErrNoBootable when neither is.
func (d *Disk) NextBoot(ctx context.Context) (string, error) {
	tab, err := d.read(ctx)
	if err != nil {
		return "", err
	}
	i, err := tab.Next(gpt.TypeCoreOSUsr)
	if err != nil {
		return "", err
	}
	return d.nameOf(i), nil
}

// SimulateBoot does what GRUB gptprio does at boot: picks the next slot
// and, if it has tries left, spends one, persisting the GPT. Tests use it
// to simulate a reboot (and, twice, a fallback).
func (d *Disk) SimulateBoot(ctx context.Context) (string, error) {
	var i int
	err := d.update(ctx, func(t *gpt.Table) error {
		var err error
		i, err = t.NextBoot(gpt.TypeCoreOSUsr, gpt.RuleGRUB)
		return err
	})
	if err != nil {
		return "", err
	}
	return d.nameOf(i), nil
}

func (d *Disk) nameOf(index int) string {
	for _, s := range d.slots {
		if s.Index == index {
			return s.Name
		}
	}
	return fmt.Sprintf("partition %d", index)
}
