package engine

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/internal/testenv"
)

// TestSlotPostinst (root): the new image's /postinst runs from the
// read-only mounted passive partition with the device as argument; exit 3
// is code 19; an image without it, or not mountable, is skipped; nothing
// stays mounted.
func TestSlotPostinst(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mkfs.ext4")
	out := filepath.Join(t.TempDir(), "ran")
	tests := []struct {
		name    string
		script  string // "" = no /postinst in the image
		raw     bool   // not a file system at all
		wantRan bool
		wantErr status.Code
	}{
		{"runs", "#!/bin/sh\necho \"$1 $NEW_VERSION\" > " + out + "\n", false, true, status.Success},
		{"exit 3", "#!/bin/sh\necho \"$1\" > " + out + "\nexit 3\n", false, true, status.PostinstallBootedFromFirmwareB},
		{"fails", "#!/bin/sh\necho \"$1\" > " + out + "\nexit 1\n", false, true, status.PostinstallRunnerError},
		{"no program", "", false, false, status.Success},
		{"not a file system", "", true, false, status.Success},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(out)
			dir := t.TempDir()
			img := filepath.Join(dir, "usr.img")
			if tt.raw {
				if err := os.WriteFile(img, make([]byte, 8<<20), 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				tree := filepath.Join(dir, "tree")
				if err := os.MkdirAll(tree, 0o755); err != nil {
					t.Fatal(err)
				}
				if tt.script != "" {
					if err := os.WriteFile(filepath.Join(tree, "postinst"), []byte(tt.script), 0o755); err != nil {
						t.Fatal(err)
					}
				}
				if b, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", tree, img, "8M").CombinedOutput(); err != nil {
					t.Fatalf("mkfs.ext4: %v: %s", err, b)
				}
			}
			dev := testenv.LoopDevice(t, img)
			err := SlotPostinst{}.Run(t.Context(), dev, &Plan{Version: "2.0.0"})
			if got := status.CodeOf(err); got.Base() != tt.wantErr {
				t.Fatalf("Run = %v (code %v), want code %v", err, got, tt.wantErr)
			}
			b, rerr := os.ReadFile(out)
			if ran := rerr == nil; ran != tt.wantRan {
				t.Fatalf("program ran = %v, want %v", ran, tt.wantRan)
			}
			if tt.wantRan && !strings.HasPrefix(string(b), dev) {
				t.Fatalf("program got %q, want the device %s first", b, dev)
			}
			if tt.name == "runs" && strings.TrimSpace(string(b)) != dev+" 2.0.0" {
				t.Fatalf("program got %q, want %q", b, dev+" 2.0.0")
			}
			mounts, _ := os.ReadFile("/proc/self/mounts")
			if strings.Contains(string(mounts), dev+" ") {
				t.Fatalf("%s still mounted", dev)
			}
		})
	}
}

func TestSlotPostinstImageFile(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := (SlotPostinst{}).Run(t.Context(), img, nil); err != nil {
		t.Fatalf("image file: %v, want a skip", err)
	}
	if err := (SlotPostinst{}).Run(t.Context(), filepath.Join(t.TempDir(), "missing"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing device: %v, want ErrNotExist", err)
	}
}
