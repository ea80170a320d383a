package gpt

import (
	"fmt"
	"slices"
)

// Rule selects how NextBoot spends a try.
type Rule int

const (
	// RuleGRUB is CoreOS/Flatcar GRUB gptprio.next: a non-zero tries is
	// decremented, nothing else changes.
	RuleGRUB Rule = iota
	// RuleVboot is ChromeOS vboot: a non-successful entry's tries is
	// decremented; using the last try clears priority, tries and
	// successful.
	RuleVboot
)

// Prioritize makes partition index the only one with the highest priority
// among the partitions of its type, as `cgpt prioritize -i index` does: the
// others keep their relative order in priority groups renumbered from
// (number of non-zero groups, at most 15) down, never below 1, and entries
// at priority 0 stay at 0.
func (t *Table) Prioritize(index int) error {
	e, err := t.used(index)
	if err != nil {
		return err
	}
	const special = 99 // above any 4-bit priority
	type group struct {
		prio  int
		parts []int
	}
	var groups []group
	add := func(prio, i int) {
		for g := range groups {
			if groups[g].prio == prio {
				groups[g].parts = append(groups[g].parts, i)
				return
			}
		}
		groups = append(groups, group{prio, []int{i}})
	}
	for _, i := range t.FindType(e.Type) {
		if i == index {
			add(special, i)
		} else {
			add(t.Entries[i-1].Priority(), i)
		}
	}
	slices.SortStableFunc(groups, func(a, b group) int { return b.prio - a.prio })
	if groups[len(groups)-1].prio == 0 {
		groups = groups[:len(groups)-1]
	}
	prio := min(len(groups), MaxPriority)
	for _, g := range groups {
		for _, i := range g.parts {
			_ = t.Entries[i-1].SetPriority(prio) // 1..15
		}
		if prio > 1 {
			prio--
		}
	}
	return nil
}

// MarkForTrial prepares a freshly written partition for one boot attempt,
// as flatcar-postinst does: successful=0, tries=1, then Prioritize.
func (t *Table) MarkForTrial(index int) error {
	e, err := t.used(index)
	if err != nil {
		return err
	}
	e.SetSuccessful(false)
	_ = e.SetTries(1)
	return t.Prioritize(index)
}

// MarkGood records a successful boot, as flatcar-setgoodroot does:
// successful=1, tries=0, then Prioritize (so a fallback slot that booted
// becomes the preferred one).
func (t *Table) MarkGood(index int) error {
	if err := t.MarkSuccessful(index); err != nil {
		return err
	}
	return t.Prioritize(index)
}

// MarkSuccessful records a successful boot without touching priorities:
// successful=1, tries=0. It is MarkGood for a slot that must stay behind
// another one (a flipped update that boots next).
func (t *Table) MarkSuccessful(index int) error {
	e, err := t.used(index)
	if err != nil {
		return err
	}
	e.SetSuccessful(true)
	_ = e.SetTries(0)
	return nil
}

// MarkBad makes a partition unbootable: priority, tries and successful 0.
func (t *Table) MarkBad(index int) error {
	e, err := t.used(index)
	if err != nil {
		return err
	}
	_ = e.SetPriority(0)
	_ = e.SetTries(0)
	e.SetSuccessful(false)
	return nil
}

// Next returns the partition of type typ the bootloader would pick now,
// without spending a try: the highest priority among entries with priority
// > 0 and (tries > 0 or successful), the lowest index on ties. It fails with
// ErrNoBootable when there is none.
func (t *Table) Next(typ GUID) (int, error) {
	best, bestPrio := 0, 0
	for _, i := range t.FindType(typ) {
		e := &t.Entries[i-1]
		if (e.Tries() > 0 || e.Successful()) && e.Priority() > bestPrio {
			best, bestPrio = i, e.Priority()
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("%w: of type %v", ErrNoBootable, typ)
	}
	return best, nil
}

// NextBoot simulates a boot: it picks the partition as Next does and spends
// a try by rule. The caller persists t (Disk.Update does).
func (t *Table) NextBoot(typ GUID, rule Rule) (int, error) {
	i, err := t.Next(typ)
	if err != nil {
		return 0, err
	}
	e := &t.Entries[i-1]
	switch {
	case rule == RuleVboot && e.Successful():
	case rule == RuleVboot && e.Tries() <= 1:
		_ = t.MarkBad(i)
	case e.Tries() > 0:
		_ = e.SetTries(e.Tries() - 1)
	}
	return i, nil
}
