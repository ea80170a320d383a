package slot

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/gpt"
)

func TestFindDisk(t *testing.T) {
	// Unique GUIDs and label, so loop devices of parallel tests (which
	// use the fixed Flatcar GUIDs) cannot match.
	ga, gb := gpt.NewGUID(), gpt.NewGUID()
	img := filepath.Join(t.TempDir(), "disk.img")
	const mib = 1 << 20
	tab, err := gpt.New(64*mib, 512, []gpt.Partition{
		{Index: 3, Name: "FIND-A", Type: gpt.TypeCoreOSUsr, GUID: ga, Size: 16 * mib},
		{Index: 4, Name: "FIND-B-" + ga.String()[:8], Type: gpt.TypeCoreOSUsr, GUID: gb, Size: 16 * mib},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64*mib); err != nil {
		t.Fatal(err)
	}
	d, err := gpt.Open(img, os.O_RDWR, 512)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Create(tab); err != nil {
		t.Fatal(err)
	}
	d.Close()
	dev := testenv.LoopDevice(t, img)

	tests := []struct {
		name    string
		cmdline string
		want    string
		wantErr error
	}{
		{"partuuid", "ro usr=PARTUUID=" + gb.String() + " console=ttyS0", dev, nil},
		{"mount.usr by-partuuid", "mount.usr=/dev/disk/by-partuuid/" + ga.String(), dev, nil},
		{"partlabel", "usr=PARTLABEL=FIND-B-" + ga.String()[:8], dev, nil},
		{"partition node", "root=" + dev + "p3", dev, nil},
		{"unknown guid", "usr=PARTUUID=" + gpt.NewGUID().String(), "", ErrDiskNotFound},
		{"not a partition", "root=" + dev, "", ErrDiskNotFound},
		{"no key", "quiet splash", "", ErrDiskNotFound},
		{"after --", "quiet -- usr=PARTUUID=" + gb.String(), "", ErrDiskNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FindDisk(tt.cmdline)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("FindDisk = %q, %v; want %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("FindDisk = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
