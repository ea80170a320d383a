package gpt_test

import (
	"errors"
	"github.com/abupdate/update_engine/pkg/gpt"
	"testing"
)

type abState struct {
	p, t int
	s    bool
}

func state(tab *gpt.Table, i int) abState {
	e := &tab.Entries[i-1]
	return abState{e.Priority(), e.Tries(), e.Successful()}
}

// TestUpdateCycle walks a Flatcar update: A good and booted, B written and
// marked for trial, B boots (spending its try), then either B is marked
// good, or B fails and the next boot falls back to A.
func TestUpdateCycle(t *testing.T) {
	const A, B = 3, 4
	tests := []struct {
		name     string
		rule     gpt.Rule
		bGood    bool
		wantA    abState
		wantB    abState
		wantBoot []int // partitions picked by successive NextBoot calls after the trial
	}{
		{name: "grub success", rule: gpt.RuleGRUB, bGood: true, wantA: abState{1, 0, true}, wantB: abState{2, 0, true}, wantBoot: []int{B, B}},
		{name: "grub fallback", rule: gpt.RuleGRUB, wantA: abState{1, 0, true}, wantB: abState{2, 0, false}, wantBoot: []int{B, A, A}},
		{name: "vboot fallback", rule: gpt.RuleVboot, wantA: abState{1, 0, true}, wantB: abState{0, 0, false}, wantBoot: []int{B, A, A}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := abTable(t, 32<<20, 512)
			if got := state(tab, B); got != (abState{}) {
				t.Fatalf("fresh B = %+v", got)
			}
			if i, _ := tab.Next(gpt.TypeCoreOSUsr); i != A {
				t.Fatalf("before update Next = %d", i)
			}
			if err := tab.MarkForTrial(B); err != nil {
				t.Fatal(err)
			}
			if got := state(tab, B); got != (abState{2, 1, false}) {
				t.Fatalf("B after MarkForTrial = %+v", got)
			}
			var booted []int
			for range tt.wantBoot {
				i, err := tab.NextBoot(gpt.TypeCoreOSUsr, tt.rule)
				if err != nil {
					t.Fatal(err)
				}
				booted = append(booted, i)
				if i == B && tt.bGood {
					if err := tab.MarkGood(B); err != nil {
						t.Fatal(err)
					}
				}
			}
			if len(booted) != len(tt.wantBoot) || booted[0] != tt.wantBoot[0] || booted[len(booted)-1] != tt.wantBoot[len(tt.wantBoot)-1] || booted[1] != tt.wantBoot[1] {
				t.Fatalf("booted %v, want %v", booted, tt.wantBoot)
			}
			if got := state(tab, A); got != tt.wantA {
				t.Errorf("A = %+v, want %+v", got, tt.wantA)
			}
			if got := state(tab, B); got != tt.wantB {
				t.Errorf("B = %+v, want %+v", got, tt.wantB)
			}
		})
	}
}

func TestNextBootNone(t *testing.T) {
	tab := abTable(t, 32<<20, 512)
	_ = tab.MarkBad(3)
	if _, err := tab.NextBoot(gpt.TypeCoreOSUsr, gpt.RuleGRUB); !errors.Is(err, gpt.ErrNoBootable) {
		t.Fatalf("err = %v, want ErrNoBootable", err)
	}
	// Priority 0 never boots, even when successful.
	tab.Entries[2].SetSuccessful(true)
	if _, err := tab.Next(gpt.TypeCoreOSUsr); !errors.Is(err, gpt.ErrNoBootable) {
		t.Fatalf("priority 0: err = %v", err)
	}
	// Ties go to the lowest index.
	_ = tab.Entries[2].SetPriority(4)
	tab.Entries[3].SetSuccessful(true)
	_ = tab.Entries[3].SetPriority(4)
	if i, _ := tab.Next(gpt.TypeCoreOSUsr); i != 3 {
		t.Fatalf("tie: Next = %d", i)
	}
	for _, op := range []func(int) error{tab.MarkBad, tab.MarkGood, tab.MarkForTrial, tab.Prioritize} {
		if err := op(5); !errors.Is(err, gpt.ErrNotFound) {
			t.Fatalf("op on unused partition 5: err = %v", err)
		}
	}
}
