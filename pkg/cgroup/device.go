package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// diskOf returns the major:minor of the whole disk holding dev, a block
// device path or "major:minor". A partition is mapped to its disk through
// sysfs (/sys/dev/block/M:m is a symlink into the disk's directory, and a
// partition's directory has a "partition" file). When sysfs has no entry
// (a fake device number in tests) the number is used as given.
func diskOf(dev, sysRoot string) (major, minor uint32, err error) {
	if dev == "" {
		return 0, 0, fmt.Errorf("%w: Device is empty", ErrInvalidConfig)
	}
	if ma, mi, ok := parseMajorMinor(dev); ok {
		major, minor = ma, mi
	} else {
		var st unix.Stat_t
		if err := unix.Stat(dev, &st); err != nil {
			return 0, 0, fmt.Errorf("%w: %s: %v", ErrNotBlockDevice, dev, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFBLK {
			return 0, 0, fmt.Errorf("%w: %s", ErrNotBlockDevice, dev)
		}
		major, minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	}
	sysDir := filepath.Join(sysRoot, "dev", "block", fmt.Sprintf("%d:%d", major, minor))
	real, err := filepath.EvalSymlinks(sysDir)
	if errors.Is(err, fs.ErrNotExist) {
		return major, minor, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("cgroup: resolving disk of %s: %w", dev, err)
	}
	if _, err := os.Stat(filepath.Join(real, "partition")); err != nil {
		return major, minor, nil // already a whole disk
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(real), "dev"))
	if err != nil {
		return 0, 0, fmt.Errorf("cgroup: disk of partition %s: %w", dev, err)
	}
	ma, mi, ok := parseMajorMinor(strings.TrimSpace(string(b)))
	if !ok {
		return 0, 0, fmt.Errorf("cgroup: disk of partition %s: bad dev %q", dev, b)
	}
	return ma, mi, nil
}

func parseMajorMinor(s string) (major, minor uint32, ok bool) {
	a, b, found := strings.Cut(s, ":")
	if !found {
		return 0, 0, false
	}
	ma, err1 := strconv.ParseUint(a, 10, 32)
	mi, err2 := strconv.ParseUint(b, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uint32(ma), uint32(mi), true
}
