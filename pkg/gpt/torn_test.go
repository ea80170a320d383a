package gpt_test

import (
	"errors"
	"github.com/abupdate/update_engine/pkg/gpt"
	"slices"
	"testing"
)

// smallAB is a 4 MiB disk with an A/B pair, for tests that copy it often.
func smallAB(t testing.TB, ss int) *gpt.Table {
	t.Helper()
	tab, err := gpt.New(4<<20, ss, []gpt.Partition{
		{Index: 3, Name: "USR-A", Type: gpt.TypeCoreOSUsr, Size: 512 << 10, Attributes: 1<<gpt.SuccessfulShift | 1<<gpt.PriorityShift | 1<<60},
		{Index: 4, Name: "USR-B", Type: gpt.TypeCoreOSUsr, Size: 512 << 10},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// abSig summarizes what an update changes, to tell old from new.
func abSig(tab *gpt.Table) [3]uint64 {
	return [3]uint64{tab.Entries[2].Attributes, tab.Entries[3].Attributes, tab.LastUsableLBA}
}

// TestTornWrites stops an gpt.Update's write sequence after every number of
// bytes that matters (each write boundary, one byte into it, half of it,
// and every 512 bytes), simulating power loss. Each time, the next gpt.Read
// must find a valid table equal to the old or the new state, and a repair
// must leave both copies valid with that same state.
func TestTornWrites(t *testing.T) {
	mark := func(tab *gpt.Table) error { return tab.MarkForTrial(4) }
	tests := []struct {
		name   string
		ss     int
		damage func(m memDisk, ss int) memDisk
	}{
		{name: "healthy 512", ss: 512},
		{name: "healthy 4096", ss: 4096},
		{name: "primary corrupt", ss: 512, damage: func(m memDisk, ss int) memDisk { m[ss+40] ^= 1; return m }},
		{name: "primary array corrupt", ss: 4096, damage: func(m memDisk, ss int) memDisk { m[2*ss+7] ^= 1; return m }},
		{name: "backup corrupt", ss: 512, damage: func(m memDisk, ss int) memDisk { m[len(m)-ss+40] ^= 1; return m }},
		{name: "grown disk", ss: 512, damage: func(m memDisk, ss int) memDisk { return append(m, make(memDisk, 1<<20)...) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := memImage(t, smallAB(t, tt.ss))
			if tt.damage != nil {
				start = tt.damage(start, tt.ss)
			}
			size := int64(len(start))
			oldTab, _, err := gpt.Read(start, size, tt.ss)
			if err != nil {
				t.Fatal(err)
			}
			oldSig := abSig(oldTab)

			// The full sequence, to learn its writes and the new state.
			full := &countingDisk{memDisk: slices.Clone(start)}
			var bounds []int
			rec := &recordingDisk{countingDisk: full, bounds: &bounds}
			if _, err := gpt.Update(rec, size, tt.ss, mark); err != nil {
				t.Fatal(err)
			}
			newTab, _, err := gpt.Read(full.memDisk, size, tt.ss)
			if err != nil {
				t.Fatal(err)
			}
			newSig := abSig(newTab)
			if newSig == oldSig {
				t.Fatal("update changed nothing")
			}

			var budgets []int
			for _, b := range bounds {
				budgets = append(budgets, b, b+1, b+tt.ss/2)
			}
			for b := 0; b < full.bytes; b += 512 {
				budgets = append(budgets, b)
			}
			slices.Sort(budgets)
			budgets = slices.Compact(budgets)
			sawOld, sawNew := false, false
			for _, budget := range budgets {
				d := &tornDisk{memDisk: slices.Clone(start), budget: budget}
				_, err := gpt.Update(d, size, tt.ss, mark)
				if budget < full.bytes && !errors.Is(err, errTorn) {
					t.Fatalf("budget %d of %d: Update err = %v, want the torn write", budget, full.bytes, err)
				}
				got, _, err := gpt.Read(d.memDisk, size, tt.ss)
				if err != nil {
					t.Fatalf("after %d of %d bytes: %v", budget, full.bytes, err)
				}
				sig := abSig(got)
				switch sig {
				case oldSig:
					sawOld = true
				case newSig:
					sawNew = true
				default:
					t.Fatalf("after %d bytes: state %x is neither old %x nor new %x", budget, sig, oldSig, newSig)
				}
				if _, err := gpt.Update(d.memDisk, size, tt.ss, nil); err != nil {
					t.Fatalf("repair after %d bytes: %v", budget, err)
				}
				again, rep, err := gpt.Read(d.memDisk, size, tt.ss)
				if err != nil || rep.NeedsRepair() || abSig(again) != sig {
					t.Fatalf("after %d bytes and repair: %v %v, state %x want %x", budget, rep, err, abSig(again), sig)
				}
			}
			if !sawOld || !sawNew {
				t.Fatalf("torn points saw old=%v new=%v; both must occur", sawOld, sawNew)
			}
			t.Logf("%d writes, %d bytes, %d torn points", len(bounds), full.bytes, len(budgets))
		})
	}
}

// recordingDisk records the byte count at the start of every write.
type recordingDisk struct {
	*countingDisk
	bounds *[]int
}

func (r *recordingDisk) WriteAt(p []byte, off int64) (int, error) {
	*r.bounds = append(*r.bounds, r.bytes)
	return r.countingDisk.WriteAt(p, off)
}
