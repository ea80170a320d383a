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
