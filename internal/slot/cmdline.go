package slot

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/abupdate/update_engine/pkg/gpt"
)

// cmdlineKeys are the kernel parameters that name the booted /usr or root
// partition, in the order they are trusted.
var cmdlineKeys = []string{"usr", "mount.usr", "verity.usr", "root"}

// fromCmdline finds the booted slot from a kernel command line.
func (d *Disk) fromCmdline(cmdline string) (int, error) {
	params := cmdlineParams(cmdline)
	var seen []string
	for _, k := range cmdlineKeys {
		v, ok := params[k]
		if !ok {
			continue
		}
		seen = append(seen, k+"="+v)
		if i, ok := d.matchDevice(v); ok {
			return i, nil
		}
	}
	if len(seen) == 0 {
		return 0, fmt.Errorf("%w: kernel command line has none of %s=", ErrBootedUnknown, strings.Join(cmdlineKeys, "=, "))
	}
	return 0, fmt.Errorf("%w: %s names no slot of %s", ErrBootedUnknown, strings.Join(seen, " "), d.path)
}

// matchDevice resolves PARTUUID=, PARTLABEL=, a bare GUID, or a /dev path
// to a slot.
func (d *Disk) matchDevice(v string) (int, bool) {
	switch {
	case hasPrefixFold(v, "PARTUUID="):
		return d.matchGUID(v[len("PARTUUID="):])
	case hasPrefixFold(v, "PARTLABEL="):
		return d.matchLabel(v[len("PARTLABEL="):])
	case strings.HasPrefix(v, "/dev/disk/by-partuuid/"):
		return d.matchGUID(strings.TrimPrefix(v, "/dev/disk/by-partuuid/"))
	case strings.HasPrefix(v, "/dev/disk/by-partlabel/"):
		return d.matchLabel(strings.TrimPrefix(v, "/dev/disk/by-partlabel/"))
	case strings.HasPrefix(v, "/dev/"):
		return d.matchNode(v)
	}
	return d.matchGUID(v)
}

func hasPrefixFold(s, p string) bool { return len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) }

func (d *Disk) matchGUID(s string) (int, bool) {
	g, err := gpt.ParseGUID(s)
	if err != nil {
		return 0, false
	}
	for i := range d.slots {
		if d.slots[i].GUID == g {
			return i, true
		}
	}
	return 0, false
}

func (d *Disk) matchLabel(l string) (int, bool) {
	for i := range d.slots {
		if d.slots[i].Label == l {
			return i, true
		}
	}
	return 0, false
}

// matchNode matches a partition node of this disk: the slot's own node, or
// <disk><N> / <disk>p<N> when the disk is itself a /dev path. Symlinks are
// resolved when they exist.
func (d *Disk) matchNode(v string) (int, bool) {
	if r, err := filepath.EvalSymlinks(v); err == nil {
		v = r
	}
	disk := d.path
	if r, err := filepath.EvalSymlinks(disk); err == nil {
		disk = r
	}
	for i, s := range d.slots {
		if s.Device != "" && s.Device == v {
			return i, true
		}
		if !strings.HasPrefix(disk, "/dev/") {
			continue
		}
		n := fmt.Sprint(s.Index)
		if v == disk+n || v == disk+"p"+n {
			return i, true
		}
	}
	return 0, false
}

// node is a kernel partition of a block device.
type node struct {
	dev         string
	start, size int64 // bytes
}

// partitionNodes lists the partitions sysfs knows for the whole-disk block
// device path, by partition number.
func partitionNodes(path string) map[int]node {
	nodes := map[int]node{}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nodes
	}
	name := filepath.Base(real)
	dir := filepath.Join("/sys/class/block", name)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nodes
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), name) {
			continue
		}
		var num, start, size int64
		if readInt(filepath.Join(dir, e.Name(), "partition"), &num) != nil ||
			readInt(filepath.Join(dir, e.Name(), "start"), &start) != nil ||
			readInt(filepath.Join(dir, e.Name(), "size"), &size) != nil {
			continue
		}
		dev := filepath.Join("/dev", e.Name())
		if fi, err := os.Stat(dev); err != nil || fi.Mode()&os.ModeDevice == 0 {
			continue
		}
		// sysfs start and size are in 512-byte units whatever the sector size.
		nodes[int(num)] = node{dev: dev, start: start * 512, size: size * 512}
	}
	return nodes
}

func readInt(path string, v *int64) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	_, err = fmt.Sscan(strings.TrimSpace(string(b)), v)
	return err
}
