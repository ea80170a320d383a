package testenv

import (
	"os"
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
	settleUdev(t)
	return dev
}

// settleUdev waits for udev's event queue to drain when udev runs (in the
// vmtest guest; the host has none). There, losetup's close of the device
// it opened for writing makes udev re-read the partition table, which
// removes /dev/loopNpM and adds them again a moment later: a test that
// opened a partition in between found no such file.
func settleUdev(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/run/udev/control"); err != nil {
		return
	}
	if out, err := exec.Command("udevadm", "settle", "--timeout=30").CombinedOutput(); err != nil {
		t.Logf("udevadm settle: %v: %s", err, out)
	}
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
	return dir, unmounter(t, dir, "umount", dir)
}

// MountVFAT makes a FAT file system (an ESP) on dev and mounts it on a
// directory in t.TempDir(), which it returns, with the kernel's vfat or,
// on a kernel without it, FUSE's fusefat (Debian fusefat). The returned
// function unmounts it (idempotent); t.Cleanup calls it too. It skips t
// unless root, or when neither mount works.
func MountVFAT(t testing.TB, dev string) (dir string, unmount func()) {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "mkfs.vfat", "mount", "umount")
	if out, err := exec.Command("mkfs.vfat", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.vfat %s: %v: %s", dev, err, out)
	}
	dir = t.TempDir()
	out, err := exec.Command("mount", "-t", "vfat", dev, dir).CombinedOutput()
	if err == nil {
		return dir, unmounter(t, dir, "umount", dir)
	}
	if _, lerr := exec.LookPath("fusefat"); lerr != nil {
		t.Skipf("cannot mount a FAT file system: mount -t vfat: %v: %s; and no fusefat (apt-get install fusefat)", err, out)
	}
	if out, err := exec.Command("fusefat", "-o", "rw+", dev, dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a FAT file system: fusefat: %v: %s", err, out)
	}
	return dir, unmounter(t, dir, "fusermount", "-u", dir)
}

// unmounter returns an idempotent unmount of dir by the command, also
// registered with t.Cleanup.
func unmounter(t testing.TB, dir string, cmd ...string) func() {
	mounted := true
	unmount := func() {
		if !mounted {
			return
		}
		mounted = false
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Errorf("%s %s: %v: %s", cmd[0], dir, err, out)
		}
	}
	t.Cleanup(unmount)
	return unmount
}
