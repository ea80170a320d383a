package gpt

import "fmt"

// Entry returns partition number index (1-based), used or not.
func (t *Table) Entry(index int) (*Entry, error) {
	if index < 1 || index > len(t.Entries) {
		return nil, fmt.Errorf("%w: index %d not in 1..%d", ErrNotFound, index, len(t.Entries))
	}
	return &t.Entries[index-1], nil
}

// used returns partition index if it is used.
func (t *Table) used(index int) (*Entry, error) {
	e, err := t.Entry(index)
	if err != nil {
		return nil, err
	}
	if !e.IsUsed() {
		return nil, fmt.Errorf("%w: partition %d is unused", ErrNotFound, index)
	}
	return e, nil
}

// FindLabel returns the index of the used partition named label. It fails
// with ErrNotFound when none is, and ErrInvalid when several are.
func (t *Table) FindLabel(label string) (int, error) {
	return t.findOne(fmt.Sprintf("label %q", label), func(e *Entry) bool { return e.Name == label })
}

// FindGUID returns the index of the partition whose unique GUID is g.
func (t *Table) FindGUID(g GUID) (int, error) {
	return t.findOne("unique GUID "+g.String(), func(e *Entry) bool { return e.GUID == g })
}

// FindType returns the indexes, ascending, of the partitions of type typ.
func (t *Table) FindType(typ GUID) []int {
	var idx []int
	for i := range t.Entries {
		if t.Entries[i].IsUsed() && t.Entries[i].Type == typ {
			idx = append(idx, i+1)
		}
	}
	return idx
}

func (t *Table) findOne(what string, match func(*Entry) bool) (int, error) {
	found := 0
	for i := range t.Entries {
		if t.Entries[i].IsUsed() && match(&t.Entries[i]) {
			if found != 0 {
				return 0, fmt.Errorf("%w: partitions %d and %d both have %s", ErrInvalid, found, i+1, what)
			}
			found = i + 1
		}
	}
	if found == 0 {
		return 0, fmt.Errorf("%w: no partition with %s", ErrNotFound, what)
	}
	return found, nil
}
