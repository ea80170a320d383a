package gpt_test

import (
	"errors"
	"github.com/abupdate/update_engine/pkg/gpt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// memDisk is a disk in memory.
type memDisk []byte

func (m memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, errors.New("memDisk: read out of range")
	}
	return copy(p, m[off:]), nil
}

func (m memDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, errors.New("memDisk: write out of range")
	}
	return copy(m[off:], p), nil
}

var errTorn = errors.New("torn: power lost")

// tornDisk lets budget bytes through, then writes a partial prefix of the
// next write and fails every write after that.
type tornDisk struct {
	memDisk
	budget int
	writes int
}

func (d *tornDisk) WriteAt(p []byte, off int64) (int, error) {
	d.writes++
	if d.budget <= 0 {
		return 0, errTorn
	}
	n := min(d.budget, len(p))
	copy(d.memDisk[off:], p[:n])
	d.budget -= n
	if n < len(p) {
		return n, errTorn
	}
	return n, nil
}

// countingDisk counts bytes written.
type countingDisk struct {
	memDisk
	bytes, writes int
}

func (d *countingDisk) WriteAt(p []byte, off int64) (int, error) {
	d.bytes += len(p)
	d.writes++
	return d.memDisk.WriteAt(p, off)
}

// abTable is a small Flatcar-like layout on a disk of size bytes.
func abTable(t testing.TB, size int64, ss int) *gpt.Table {
	t.Helper()
	tab, err := gpt.New(size, ss, []gpt.Partition{
		{Name: "EFI-SYSTEM", Type: gpt.TypeEFISystem, Size: 2 << 20, Attributes: 1 << 2},
		{Name: "BIOS-BOOT", Type: gpt.TypeBIOSBoot, Size: 1 << 20},
		{Name: "USR-A", Type: gpt.TypeCoreOSUsr, Size: 4 << 20, GUID: gpt.MustParseGUID("7130c94a-213a-4e5a-8e26-6cce9662f132"),
			Attributes: 1<<gpt.SuccessfulShift | 1<<gpt.PriorityShift},
		{Name: "USR-B", Type: gpt.TypeCoreOSUsr, Size: 4 << 20, GUID: gpt.MustParseGUID("e03dd35c-7c2d-4a47-b3fe-27f15780a57c"),
			Attributes: 1 << 60},
		{Index: 6, Name: "OEM", Type: gpt.TypeLinuxData, Size: 1 << 20},
		{Index: 9, Name: "ROOT", Type: gpt.TypeCoreOSResize},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// newImage writes tab (with a protective MBR) to a sparse file and returns
// its path.
func newImage(t testing.TB, tab *gpt.Table) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(tab.Sectors)*int64(tab.SectorSize)); err != nil {
		t.Fatal(err)
	}
	d, err := gpt.Open(path, os.O_RDWR, tab.SectorSize)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Create(tab); err != nil {
		t.Fatal(err)
	}
	return path
}

// memImage returns tab written to a fresh in-memory disk.
func memImage(t testing.TB, tab *gpt.Table) memDisk {
	t.Helper()
	m := make(memDisk, int64(tab.Sectors)*int64(tab.SectorSize))
	if _, err := tab.WritePMBR(m); err != nil {
		t.Fatal(err)
	}
	if err := tab.Write(m); err != nil {
		t.Fatal(err)
	}
	return m
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// equalTables compares everything but the raw bytes.
func equalTables(t testing.TB, got, want *gpt.Table) {
	t.Helper()
	if got.SectorSize != want.SectorSize || got.Sectors != want.Sectors || got.DiskGUID != want.DiskGUID ||
		got.FirstUsableLBA != want.FirstUsableLBA || got.LastUsableLBA != want.LastUsableLBA ||
		got.EntryLBA != want.EntryLBA || got.EntrySize != want.EntrySize || len(got.Entries) != len(want.Entries) {
		t.Fatalf("table header differs:\n got %+v\nwant %+v", hdrOnly(got), hdrOnly(want))
	}
	for i := range want.Entries {
		g, w := got.Entries[i], want.Entries[i]
		if g.Type != w.Type || g.GUID != w.GUID || g.FirstLBA != w.FirstLBA || g.LastLBA != w.LastLBA ||
			g.Attributes != w.Attributes || g.Name != w.Name {
			t.Fatalf("partition %d differs:\n got %+v\nwant %+v", i+1, g, w)
		}
	}
}

func hdrOnly(t *gpt.Table) gpt.Table { c := *t; c.Entries = nil; return c }
