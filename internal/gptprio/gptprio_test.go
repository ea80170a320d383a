package gptprio_test

import (
	"errors"
	"os"
	"testing"

	"github.com/abupdate/update_engine/internal/gptprio"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/gpt"
)

// TestNext walks the life of an update as the initramfs sees it: A boots
// while good; B, flipped for one try, boots once; then, not marked good,
// the next boot falls back to A.
func TestNext(t *testing.T) {
	disk := testenv.NewDisk(t, testenv.DiskSpec{})
	boot := func(want string, wantTries int) {
		t.Helper()
		c, err := gptprio.Next(disk)
		if err != nil {
			t.Fatal(err)
		}
		if c.Label != want || c.TriesWas != wantTries {
			t.Fatalf("booted %s (tries were %d), want %s (%d)", c.Label, c.TriesWas, want, wantTries)
		}
	}
	boot("USR-A", 0)
	boot("USR-A", 0)
	d, err := gpt.Open(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Update(func(tab *gpt.Table) error { return tab.MarkForTrial(4) }); err != nil {
		t.Fatal(err)
	}
	d.Close()
	boot("USR-B", 1)
	boot("USR-A", 0) // B spent its try and was never marked good
	c, err := gptprio.Next(disk)
	if err != nil || c.PartUUID != testenv.GUIDSlotA {
		t.Fatalf("PARTUUID %v, %v; want %v", c.PartUUID, err, testenv.GUIDSlotA)
	}
}

func TestNextNoBootable(t *testing.T) {
	disk := testenv.NewDisk(t, testenv.DiskSpec{})
	d, err := gpt.Open(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Update(func(tab *gpt.Table) error { return tab.MarkBad(3) }); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := gptprio.Next(disk); !errors.Is(err, gpt.ErrNoBootable) {
		t.Fatalf("err = %v, want ErrNoBootable", err)
	}
}
