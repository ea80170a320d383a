package slot_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/gpt"
)

func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

type bits struct {
	p, t int
	s    bool
}

func slotBits(t *testing.T, img string) (a, b bits, next int) {
	t.Helper()
	infos, next, err := slot.List(img)
	if err != nil {
		t.Fatal(err)
	}
	return bits{infos[0].Priority, infos[0].Tries, infos[0].Successful}, bits{infos[1].Priority, infos[1].Tries, infos[1].Successful}, next
}

func open(t *testing.T, img, booted string) *slot.Disk {
	t.Helper()
	d, err := slot.Open(t.Context(), img, slot.Options{Booted: booted})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestUpdateAndFallback runs the flips of two updates: one whose new slot
// boots and is marked good, one whose new slot never comes up, so the
// bootloader falls back.
func TestUpdateAndFallback(t *testing.T) {
	ctx := t.Context()
	img := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: 1 << 20})
	d := open(t, img, "A")
	if n, err := d.NextBoot(ctx); err != nil || n != "A" {
		t.Fatalf("fresh NextBoot = %s, %v", n, err)
	}
	if ok, _ := d.CanRollback(ctx); ok {
		t.Fatal("fresh disk claims a rollback image")
	}
	steps := []struct {
		name     string
		do       func() (string, error)
		wantName string
		wantA    bits
		wantB    bits
		wantNext int
	}{
		{"B unbootable while written", func() (string, error) { return "", d.MarkPassiveUnbootable(ctx) }, "", bits{1, 0, true}, bits{0, 0, false}, 3},
		{"B for trial", func() (string, error) { return "", d.MarkPassiveForTrial(ctx) }, "", bits{1, 0, true}, bits{2, 1, false}, 4},
		{"reboot into B", func() (string, error) { return d.SimulateBoot(ctx) }, "B", bits{1, 0, true}, bits{2, 0, false}, 3},
		{"B good", func() (string, error) { d = open(t, img, "B"); return "", d.MarkBootedGood(ctx) }, "", bits{1, 0, true}, bits{2, 0, true}, 4},
		{"A unbootable while written", func() (string, error) { return "", d.MarkPassiveUnbootable(ctx) }, "", bits{0, 0, false}, bits{2, 0, true}, 4},
		{"A for trial", func() (string, error) { return "", d.MarkPassiveForTrial(ctx) }, "", bits{2, 1, false}, bits{1, 0, true}, 3},
		{"reboot into A", func() (string, error) { return d.SimulateBoot(ctx) }, "A", bits{2, 0, false}, bits{1, 0, true}, 4},
		{"A hangs, fallback to B", func() (string, error) { return d.SimulateBoot(ctx) }, "B", bits{2, 0, false}, bits{1, 0, true}, 4},
		{"B good again", func() (string, error) { return "", d.MarkBootedGood(ctx) }, "", bits{1, 0, false}, bits{2, 0, true}, 4},
	}
	for _, s := range steps {
		got, err := s.do()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got != s.wantName {
			t.Fatalf("%s: booted %q, want %q", s.name, got, s.wantName)
		}
		a, b, next := slotBits(t, img)
		if a != s.wantA || b != s.wantB || next != s.wantNext {
			t.Fatalf("%s: A %+v B %+v next %d; want A %+v B %+v next %d", s.name, a, b, next, s.wantA, s.wantB, s.wantNext)
		}
	}
	if ok, _ := d.CanRollback(ctx); ok {
		t.Fatal("A never booted successfully, yet CanRollback")
	}
	if err := d.RollbackToPassive(ctx); !errors.Is(err, slot.ErrNotBootable) {
		t.Fatalf("rollback to a failed slot: %v", err)
	}
	t.Run("tools agree", func(t *testing.T) {
		testenv.RequireTool(t, "sgdisk", "cgpt")
		if out, err := runCmd("sgdisk", "-v", img); err != nil || !strings.Contains(out, "No problems found.") {
			t.Fatalf("sgdisk -v: %v %s", err, out)
		}
		if out, _ := runCmd("cgpt", "show", "-i", "4", "-S", img); out != "1" {
			t.Fatalf("cgpt show -i 4 -S = %q", out)
		}
	})
}

func TestRollback(t *testing.T) {
	ctx := t.Context()
	img := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: 1 << 20})
	d := open(t, img, "A")
	for _, step := range []func(context.Context) error{d.MarkPassiveForTrial} {
		if err := step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.SimulateBoot(ctx); err != nil {
		t.Fatal(err)
	}
	d = open(t, img, "B")
	if err := d.MarkBootedGood(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := d.CanRollback(ctx); !ok || err != nil {
		t.Fatalf("CanRollback = %v, %v", ok, err)
	}
	if err := d.RollbackToPassive(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := d.NextBoot(ctx); n != "A" {
		t.Fatalf("after rollback NextBoot = %s", n)
	}
	// Both slots unbootable: the simulated firmware finds nothing.
	if err := d.MarkPassiveUnbootable(ctx); err != nil {
		t.Fatal(err)
	}
	d = open(t, img, "A")
	if err := d.MarkPassiveUnbootable(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SimulateBoot(ctx); !errors.Is(err, gpt.ErrNoBootable) {
		t.Fatalf("SimulateBoot with no bootable slot: %v", err)
	}
	if _, err := d.NextBoot(ctx); !errors.Is(err, gpt.ErrNoBootable) {
		t.Fatalf("NextBoot with no bootable slot: %v", err)
	}
	// A cancelled context writes nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.MarkPassiveForTrial(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// TestFlipRepairsGPT: a flip on a disk whose primary GPT is damaged
// repairs it, and writes the change to both copies.
func TestFlipRepairsGPT(t *testing.T) {
	testenv.RequireTool(t, "sgdisk")
	img := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: 1 << 20})
	if out, err := runCmd("dd", "if=/dev/zero", "of="+img, "bs=512", "seek=1", "count=1", "conv=notrunc"); err != nil {
		t.Fatal(err, out)
	}
	infos, next, err := slot.List(img) // reads around the damage
	if err != nil || next != 3 || len(infos) != 2 {
		t.Fatalf("List on damaged disk: %v %d %v", infos, next, err)
	}
	d := open(t, img, "A")
	rep, err := d.Repair(t.Context())
	if err != nil || rep.Primary == nil || !errors.Is(rep.Primary, gpt.ErrCorrupt) {
		t.Fatalf("Repair: %v, %v", rep, err)
	}
	if rep, err := d.Repair(t.Context()); err != nil || rep.NeedsRepair() {
		t.Fatalf("second Repair: %v, %v", rep, err)
	}
	if _, err := runCmd("dd", "if=/dev/zero", "of="+img, "bs=512", "seek=1", "count=1", "conv=notrunc"); err != nil {
		t.Fatal(err)
	}
	if err := d.MarkPassiveForTrial(t.Context()); err != nil {
		t.Fatal(err)
	}
	if out, _ := runCmd("sgdisk", "-v", img); !strings.Contains(out, "No problems found.") {
		t.Fatalf("sgdisk -v after flip:\n%s", out)
	}
	g, err := gpt.Open(img, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, rep, err := g.Read(); err != nil || rep.NeedsRepair() {
		t.Fatalf("after flip: %v %v", rep, err)
	}
}

func TestWriteTable(t *testing.T) {
	img := testenv.NewDisk(t, testenv.DiskSpec{Layout: testenv.LayoutSimple, SlotSize: 1 << 20})
	infos, next, err := slot.List(img)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := slot.WriteTable(&buf, infos, next); err != nil {
		t.Fatal(err)
	}
	want := `SLOT  INDEX  LABEL   PRIORITY  TRIES  SUCCESSFUL  NEXT  PARTUUID                              TYPE
A     3      ROOT-A  1         0      1           yes   7130c94a-213a-4e5a-8e26-6cce9662f132  5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6
B     4      ROOT-B  0         0      0           no    e03dd35c-7c2d-4a47-b3fe-27f15780a57c  5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6
`
	if buf.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
	if _, _, err := slot.List(t.TempDir() + "/missing"); !errors.Is(err, gpt.ErrIO) {
		t.Fatalf("missing disk: %v", err)
	}
}
