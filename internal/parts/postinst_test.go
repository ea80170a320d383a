package parts

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/internal/update"
	"github.com/abupdate/update_engine/pkg/omaha"
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
		wantErr omaha.Code
	}{
		{"runs", "#!/bin/sh\necho \"$1 $NEW_VERSION\" > " + out + "\n", false, true, omaha.Success},
		{"exit 3", "#!/bin/sh\necho \"$1\" > " + out + "\nexit 3\n", false, true, omaha.PostinstallBootedFromFirmwareB},
		{"fails", "#!/bin/sh\necho \"$1\" > " + out + "\nexit 1\n", false, true, omaha.PostinstallRunnerError},
		{"no program", "", false, false, omaha.PostinstallRunnerError},
		{"not a file system", "", true, false, omaha.PostinstallRunnerError},
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
			err := SlotPostinst{}.Run(t.Context(), dev, &update.Plan{Version: "2.0.0"})
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
	if err := (SlotPostinst{}).Run(t.Context(), img, nil); status.CodeOf(err) != omaha.PostinstallRunnerError {
		t.Fatalf("image file: %v, want code 5 (nothing to mount)", err)
	}
	if err := (SlotPostinst{}).Run(t.Context(), filepath.Join(t.TempDir(), "missing"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing device: %v, want ErrNotExist", err)
	}
}

func init() {
	// As cmd/update_engine does: the main goroutine keeps the main
	// thread, so a post-install goroutine never takes it into its
	// private mount namespace.
	runtime.LockOSThread()
}

// ext4Loop builds an 8 MiB ext4 image holding files and attaches it.
func ext4Loop(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(tree, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "usr.img")
	if b, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", tree, img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, b)
	}
	return testenv.LoopDevice(t, img)
}

// mountedAnywhere reports whether dev is mounted in this mount namespace,
// or busy in any (a mount in another namespace holds the device: an
// O_EXCL open fails with EBUSY).
func mountedAnywhere(t *testing.T, dev string) (here, busy bool) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if _, src, ok := parseMountinfo(l); ok && src == dev {
			here = true
		}
	}
	f, err := os.OpenFile(dev, os.O_RDONLY|syscall.O_EXCL, 0)
	if err == nil {
		f.Close()
	}
	return here, errors.Is(err, syscall.EBUSY)
}

// TestPostinstChild is the daemon stand-in of TestSlotPostinstKilled: it
// runs only when that test starts it.
func TestPostinstChild(t *testing.T) {
	dev := os.Getenv("POSTINST_CHILD_DEVICE")
	if dev == "" {
		t.Skip("started by TestSlotPostinstKilled")
	}
	_ = SlotPostinst{}.Run(t.Context(), dev, &update.Plan{Version: "2.0.0"})
}

// TestSlotPostinstKilled (root): the new image is mounted only in a
// private mount namespace: the host never sees it while post-install
// runs, and a daemon killed during post-install leaves it mounted
// nowhere. Cleanup removes what an older engine left mounted.
func TestSlotPostinstKilled(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mkfs.ext4")
	started := filepath.Join(t.TempDir(), "started")
	dev := ext4Loop(t, map[string]string{"postinst": "#!/bin/sh\necho $$ > " + started + "\nexec sleep 60\n"})
	child := exec.Command(os.Args[0], "-test.run=^TestPostinstChild$", "-test.count=1")
	child.Env = append(os.Environ(), "POSTINST_CHILD_DEVICE="+dev)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	var pid int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(started); err == nil && len(b) > 1 {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("post-install program did not start")
		}
	}
	if here, busy := mountedAnywhere(t, dev); here || !busy {
		t.Fatalf("while post-install runs: mounted in the host namespace %v (want false), busy %v (want true)", here, busy)
	}
	// The daemon dies (kill -9), and so does its cgroup (systemd).
	_ = child.Process.Kill()
	_ = child.Wait()
	if pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		here, busy := mountedAnywhere(t, dev)
		if !here && !busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the kill: mounted here %v, busy %v", here, busy)
		}
	}

	// What an older engine left behind: a mount point in the temporary
	// directory.
	mnt, err := os.MkdirTemp("", mountPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := mountReadOnly(dev, mnt); err != nil {
		t.Fatal(err)
	}
	if here, _ := mountedAnywhere(t, dev); !here {
		t.Fatal("the leftover mount did not take")
	}
	if err := (SlotPostinst{}).Cleanup(dev); err != nil {
		t.Fatal(err)
	}
	if here, _ := mountedAnywhere(t, dev); here {
		t.Fatal("Cleanup left the mount")
	}
	if _, err := os.Stat(mnt); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Cleanup left the mount point: %v", err)
	}
}
