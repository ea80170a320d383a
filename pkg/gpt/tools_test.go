package gpt_test

import (
	"fmt"
	"github.com/abupdate/update_engine/pkg/gpt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

// cgptShow returns one field of partition i as cgpt prints it.
func cgptShow(t testing.TB, img string, i int, flag string) string {
	t.Helper()
	return run(t, "cgpt", "show", "-i", strconv.Itoa(i), flag, img)
}

// requireSgdiskClean fails unless sgdisk -v finds no problem (it exits 0
// either way, so the text is what counts).
func requireSgdiskClean(t testing.TB, img string) {
	t.Helper()
	out := run(t, "sgdisk", "-v", img)
	if !strings.Contains(out, "No problems found.") {
		t.Fatalf("sgdisk -v %s:\n%s", img, out)
	}
}

// requireCgptAgrees checks every used partition of tab against cgpt show.
func requireCgptAgrees(t testing.TB, img string, tab *gpt.Table) {
	t.Helper()
	for i := range tab.Entries {
		e := &tab.Entries[i]
		if !e.IsUsed() {
			continue
		}
		want := map[string]string{
			"-P": strconv.Itoa(e.Priority()),
			"-T": strconv.Itoa(e.Tries()),
			"-S": map[bool]string{true: "1", false: "0"}[e.Successful()],
			"-A": strings.Replace(fmt.Sprintf("%#x", e.Attributes>>48), "0x0", "0", 1),
			"-b": strconv.FormatUint(e.FirstLBA, 10),
			"-s": strconv.FormatUint(e.Sectors(), 10),
			"-t": strings.ToUpper(e.Type.String()),
			"-u": strings.ToUpper(e.GUID.String()),
			"-l": e.Name,
		}
		for flag, w := range want {
			if got := cgptShow(t, img, i+1, flag); got != w {
				t.Errorf("cgpt show -i %d %s = %q, want %q", i+1, flag, got, w)
			}
		}
	}
}

func readImage(t testing.TB, img string) (*gpt.Table, *gpt.Report) {
	t.Helper()
	d, err := gpt.Open(img, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tab, rep, err := d.Read()
	if err != nil {
		t.Fatal(err)
	}
	return tab, rep
}

func updateImage(t testing.TB, img string, fn func(*gpt.Table) error) *gpt.Report {
	t.Helper()
	d, err := gpt.Open(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rep, err := d.Update(fn)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestToolsAgreeWithOurWrites: every table this package writes, after every
// A/B operation, reads back identically with cgpt and passes sgdisk -v.
func TestToolsAgreeWithOurWrites(t *testing.T) {
	testenv.RequireTool(t, "cgpt", "sgdisk")
	tab := abTable(t, 64<<20, 512)
	img := newImage(t, tab)
	steps := []struct {
		name string
		op   func(*gpt.Table) error
	}{
		{"fresh", nil},
		{"trial B", func(t *gpt.Table) error { return t.MarkForTrial(4) }},
		{"boot B", func(t *gpt.Table) error { _, err := t.NextBoot(gpt.TypeCoreOSUsr, gpt.RuleGRUB); return err }},
		{"good B", func(t *gpt.Table) error { return t.MarkGood(4) }},
		{"trial A", func(t *gpt.Table) error { return t.MarkForTrial(3) }},
		{"bad A", func(t *gpt.Table) error { return t.MarkBad(3) }},
		{"odd bits", func(t *gpt.Table) error {
			t.Entries[0].Attributes |= 1<<63 | 1<<48 | 0xf<<52
			t.Entries[8].Name = "ROOT-ÄÖ"
			return nil
		}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.op != nil {
				updateImage(t, img, s.op)
			}
			got, rep := readImage(t, img)
			if rep.NeedsRepair() {
				t.Fatalf("after %s: %v", s.name, rep)
			}
			requireSgdiskClean(t, img)
			requireCgptAgrees(t, img, got)
		})
	}
}

// TestReadToolMadeDisks: disks made by sgdisk and cgpt, attribute bits set
// by cgpt add -P -T -S and sgdisk -A, read correctly.
func TestReadToolMadeDisks(t *testing.T) {
	testenv.RequireTool(t, "cgpt", "sgdisk")
	img := t.TempDir() + "/sg.img"
	run(t, "truncate", "-s", "64M", img)
	run(t, "sgdisk", "-o",
		"-n", "1:2048:+2M", "-t", "1:c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "-c", "1:EFI-SYSTEM", "-A", "1:set:2",
		"-n", "3:0:+8M", "-t", "3:5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6", "-c", "3:USR-A", "-u", "3:7130c94a-213a-4e5a-8e26-6cce9662f132", "-A", "3:set:60",
		"-n", "4:0:+8M", "-t", "4:5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6", "-c", "4:USR-B", "-u", "4:e03dd35c-7c2d-4a47-b3fe-27f15780a57c", "-A", "4:set:63",
		"-n", "9:0:0", "-t", "9:3884dd41-8582-4404-b9a8-e9b84f2df50e", "-c", "9:ROOT", img)
	run(t, "cgpt", "add", "-i", "3", "-P", "1", "-T", "0", "-S", "1", img)
	run(t, "cgpt", "add", "-i", "4", "-P", "2", "-T", "1", "-S", "0", img)

	tab, rep := readImage(t, img)
	if rep.NeedsRepair() {
		t.Fatalf("sgdisk+cgpt disk reported as damaged: %v", rep)
	}
	requireCgptAgrees(t, img, tab)
	tests := []struct {
		name          string
		index         int
		label         string
		prio, tries   int
		ok            bool
		attrs         uint64
		first, sector uint64
	}{
		{"EFI", 1, "EFI-SYSTEM", 0, 0, false, 1 << 2, 2048, 4096},
		{"USR-A", 3, "USR-A", 1, 0, true, 1<<60 | 1<<56 | 1<<48, 6144, 16384},
		{"USR-B", 4, "USR-B", 2, 1, false, 1<<63 | 1<<52 | 2<<48, 22528, 16384},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, err := tab.FindLabel(tt.label)
			if err != nil || i != tt.index {
				t.Fatalf("FindLabel = %d, %v", i, err)
			}
			e := &tab.Entries[i-1]
			if e.Priority() != tt.prio || e.Tries() != tt.tries || e.Successful() != tt.ok || e.Attributes != tt.attrs {
				t.Fatalf("attrs %#x: P%d T%d S%v", e.Attributes, e.Priority(), e.Tries(), e.Successful())
			}
			if e.FirstLBA != tt.first || e.Sectors() != tt.sector {
				t.Fatalf("at %d+%d", e.FirstLBA, e.Sectors())
			}
		})
	}
	if i, err := tab.Next(gpt.TypeCoreOSUsr); err != nil || i != 4 {
		t.Fatalf("Next = %d, %v; want USR-B (4)", i, err)
	}
	// Our A/B operations keep sgdisk's bits 60 and 63, and the tools agree.
	updateImage(t, img, func(t *gpt.Table) error { return t.MarkGood(4) })
	tab, _ = readImage(t, img)
	if a := tab.Entries[3].Attributes; a != 1<<63|1<<56|2<<48 {
		t.Fatalf("USR-B after MarkGood: %#x", a)
	}
	if a := tab.Entries[2].Attributes; a != 1<<60|1<<56|1<<48 {
		t.Fatalf("USR-A after MarkGood(B): %#x", a)
	}
	requireSgdiskClean(t, img)
	requireCgptAgrees(t, img, tab)

	// A disk made by cgpt create + cgpt add reads too.
	img2 := t.TempDir() + "/cgpt.img"
	run(t, "truncate", "-s", "16M", img2)
	run(t, "cgpt", "create", img2)
	run(t, "cgpt", "add", "-i", "2", "-b", "4096", "-s", "8192", "-t", "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6", "-l", "USR-B", "-P", "15", "-T", "15", "-S", "1", img2)
	tab2, rep2 := readImage(t, img2)
	e := tab2.Entries[1]
	if e.Name != "USR-B" || e.Type != gpt.TypeCoreOSUsr || e.Priority() != 15 || e.Tries() != 15 || !e.Successful() || e.FirstLBA != 4096 {
		t.Fatalf("cgpt-made entry: %+v (report %v)", e, rep2)
	}
}

// TestPrioritizeMatchesCgpt runs our Prioritize and `cgpt prioritize -i N`
// on the same ChromeOS-kernel-typed disks (the type Debian's cgpt
// prioritizes) and requires identical priorities.
func TestPrioritizeMatchesCgpt(t *testing.T) {
	testenv.RequireTool(t, "cgpt")
	tests := []struct {
		name  string
		prios []int
		index int
	}{
		{"flatcar A good, B new", []int{1, 0}, 2},
		{"already top", []int{2, 1}, 1},
		{"swap", []int{2, 1}, 2},
		{"all zero", []int{0, 0, 0}, 3},
		{"ties", []int{3, 3, 1, 0}, 4},
		{"gaps", []int{15, 7, 7, 2, 0}, 3},
		{"many groups", []int{15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 1}, 16},
		{"coalesce", []int{15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0}, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var parts []gpt.Partition
			for i, p := range tt.prios {
				parts = append(parts, gpt.Partition{Name: fmt.Sprintf("KERN-%d", i+1), Type: gpt.TypeChromeOSKernel, Size: 1 << 20,
					Attributes: uint64(p)<<gpt.PriorityShift | 1<<gpt.TriesShift})
			}
			parts = append(parts, gpt.Partition{Name: "OTHER", Type: gpt.TypeCoreOSUsr, Size: 1 << 20, Attributes: 5 << gpt.PriorityShift})
			tab, err := gpt.New(32<<20, 512, parts)
			if err != nil {
				t.Fatal(err)
			}
			img := newImage(t, tab)
			run(t, "cgpt", "prioritize", "-i", strconv.Itoa(tt.index), img)
			theirs, _ := readImage(t, img)
			if err := tab.Prioritize(tt.index); err != nil {
				t.Fatal(err)
			}
			for i := range tab.Entries {
				if g, w := tab.Entries[i].Priority(), theirs.Entries[i].Priority(); g != w {
					t.Errorf("partition %d: our priority %d, cgpt's %d", i+1, g, w)
				}
			}
			if p := tab.Entries[len(tt.prios)].Priority(); p != 5 {
				t.Errorf("other type changed to %d", p)
			}
		})
	}
}
