package gpt_test

import (
	"errors"
	"github.com/abupdate/update_engine/pkg/gpt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

// TestRepair damages copies of a table in place and checks what gpt.Read
// reports, that gpt.Update repairs it, and that sgdisk then finds no problem.
func TestRepair(t *testing.T) {
	const size = 64 << 20
	for _, ss := range []int{512, 4096} {
		tests := []struct {
			name       string
			damage     func(m memDisk)
			want       func(r *gpt.Report) bool
			wantErr    []string // substrings of the error when nothing is readable
			skipSgdisk bool
		}{
			{name: "primary header", damage: func(m memDisk) { m[ss+20] ^= 1 }, want: func(r *gpt.Report) bool { return r.Primary != nil && r.Backup == nil }},
			{name: "primary signature", damage: func(m memDisk) { copy(m[ss:], "NOT PART") }, want: func(r *gpt.Report) bool { return r.Primary != nil }},
			{name: "primary entries", damage: func(m memDisk) { m[2*ss+100] ^= 0x80 }, want: func(r *gpt.Report) bool { return r.Primary != nil && r.Backup == nil }},
			{name: "backup header", damage: func(m memDisk) { clear(m[size-ss:]) }, want: func(r *gpt.Report) bool { return r.Backup != nil && r.Primary == nil }},
			{name: "backup entries", damage: func(m memDisk) { m[size-ss-16384+300] ^= 4 }, want: func(r *gpt.Report) bool { return r.Backup != nil }},
			{name: "pmbr", damage: func(m memDisk) { clear(m[446:512]) }, want: func(r *gpt.Report) bool { return r.PMBR != nil && r.Primary == nil }},
			{name: "copies differ", damage: func(m memDisk) {
				tab, _, _ := gpt.Read(m, size, ss)
				_ = tab.MarkBad(3)
				scratch := slices.Clone(m)
				_ = tab.Write(scratch)
				copy(m[size-ss-16384:], scratch[size-ss-16384:]) // only the backup changes
			}, want: func(r *gpt.Report) bool { return r.Mismatch && r.Primary == nil && r.Backup == nil }},
			{name: "both headers", damage: func(m memDisk) { m[ss+30] ^= 1; m[size-ss+30] ^= 1 },
				wantErr: []string{"primary header at LBA 1: header CRC32", "backup header at LBA"}},
			{name: "primary header, backup entries", damage: func(m memDisk) { clear(m[ss : 2*ss]); m[size-ss-100] ^= 1 },
				wantErr: []string{"primary header at LBA 1: no \"EFI PART\"", "backup entry array"}},
		}
		for _, tt := range tests {
			t.Run(tt.name+"/"+map[int]string{512: "512", 4096: "4096"}[ss], func(t *testing.T) {
				want := abTable(t, size, ss)
				m := memImage(t, want)
				tt.damage(m)
				_, rep, err := gpt.Read(m, size, ss)
				if tt.wantErr != nil {
					if !errors.Is(err, gpt.ErrNoValidGPT) {
						t.Fatalf("err = %v, want ErrNoValidGPT", err)
					}
					for _, s := range tt.wantErr {
						if !strings.Contains(err.Error(), s) {
							t.Fatalf("error %q does not mention %q", err, s)
						}
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if !tt.want(rep) || !rep.NeedsRepair() {
					t.Fatalf("report: %v", rep)
				}
				if rep.Primary != nil && !errors.Is(rep.Primary, gpt.ErrCorrupt) {
					t.Fatalf("primary error %v is not ErrCorrupt", rep.Primary)
				}
				if _, err := gpt.Update(m, size, ss, nil); err != nil {
					t.Fatal(err)
				}
				got, rep, err := gpt.Read(m, size, ss)
				if err != nil || rep.NeedsRepair() {
					t.Fatalf("after repair: %v, %v", rep, err)
				}
				if tt.name != "copies differ" {
					equalTables(t, got, want)
				}
				if ss == 512 && !tt.skipSgdisk {
					testenv.RequireTool(t, "sgdisk")
					img := t.TempDir() + "/r.img"
					if err := os.WriteFile(img, m, 0o644); err != nil {
						t.Fatal(err)
					}
					requireSgdiskClean(t, img)
				}
			})
		}
	}
}

// TestGrownDisk: an image grown after the GPT was written has its backup in
// the middle; gpt.Update moves it to the end and extends the usable range, as
// sgdisk -e does, and sgdisk agrees with the result.
func TestGrownDisk(t *testing.T) {
	testenv.RequireTool(t, "sgdisk")
	for _, corruptPrimaryArray := range []bool{false, true} {
		name := map[bool]string{false: "clean", true: "primary array corrupt"}[corruptPrimaryArray]
		t.Run(name, func(t *testing.T) {
			img := newImage(t, abTable(t, 32<<20, 512))
			if corruptPrimaryArray {
				f, _ := os.OpenFile(img, os.O_RDWR, 0)
				_, _ = f.WriteAt([]byte{0xff}, 1024+5)
				f.Close()
			}
			if err := os.Truncate(img, 48<<20); err != nil {
				t.Fatal(err)
			}
			_, rep := readImage(t, img)
			if !rep.BackupMoved || rep.PMBR == nil {
				t.Fatalf("grown disk report: %v", rep)
			}
			// What sgdisk -e makes of the same grown disk.
			theirs := t.TempDir() + "/sgdisk-e.img"
			run(t, "cp", "--sparse=always", img, theirs)
			run(t, "sgdisk", "-e", theirs)
			updateImage(t, img, nil)
			got, rep := readImage(t, img)
			want, wrep := readImage(t, theirs)
			if wrep.Primary != nil || wrep.Backup != nil || wrep.BackupMoved {
				t.Fatalf("sgdisk -e result: %v", wrep)
			}
			equalTables(t, got, want)
			if rep.NeedsRepair() {
				t.Fatalf("after repair: %v", rep)
			}
			if want := uint64(48<<20/512) - 34; got.LastUsableLBA != want {
				t.Fatalf("LastUsableLBA = %d, want %d", got.LastUsableLBA, want)
			}
			requireSgdiskClean(t, img)
			// The ROOT partition can now be grown into the new space.
			updateImage(t, img, func(t *gpt.Table) error { t.Entries[8].LastLBA = t.LastUsableLBA; return nil })
			requireSgdiskClean(t, img)
		})
	}
	// A truncated (shrunk) image is reported, not silently accepted.
	img := newImage(t, abTable(t, 32<<20, 512))
	if err := os.Truncate(img, 24<<20); err != nil {
		t.Fatal(err)
	}
	d, _ := gpt.Open(img, os.O_RDONLY, 512)
	defer d.Close()
	if _, _, err := d.Read(); !errors.Is(err, gpt.ErrNoValidGPT) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("shrunk image: err = %v", err)
	}
}
