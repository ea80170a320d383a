package testenv

import (
	"os/exec"
	"strings"
	"testing"
)

// LoopDevice attaches img to a free loop device with partition scanning and
// returns its path (/dev/loopN). Because this kernel does not scan
// partition tables by itself, it also runs `partx -a` so /dev/loopNpM exist
// when img holds a partition table. The device is detached in t.Cleanup.
// It skips t unless root.
func LoopDevice(t testing.TB, img string) string {
	t.Helper()
	return attachLoop(t, img)
}

func attachLoop(t testing.TB, img string, args ...string) string {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "losetup", "partx")
	out, err := exec.Command("losetup", append([]string{"-f", "--show", "-P"}, append(args, img)...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup %s %s: %v: %s", strings.Join(args, " "), img, err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		_ = exec.Command("partx", "-d", dev).Run()
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	// partx -a fails harmlessly when there is no table or the kernel
	// already added the partitions.
	_ = exec.Command("partx", "-a", dev).Run()
	return dev
}

// MountExt4 makes an ext4 file system on dev (a loop partition) and mounts
// it on a directory in t.TempDir(), which it returns. The returned
// function unmounts it (idempotent); t.Cleanup calls it too. It skips t
// unless root.
func MountExt4(t testing.TB, dev string) (dir string, unmount func()) {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "mkfs.ext4", "mount", "umount")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v: %s", dev, err, out)
	}
	dir = t.TempDir()
	if out, err := exec.Command("mount", "-t", "ext4", dev, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", dev, err, out)
	}
	mounted := true
	unmount = func() {
		if !mounted {
			return
		}
		mounted = false
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	}
	t.Cleanup(unmount)
	return dir, unmount
}
