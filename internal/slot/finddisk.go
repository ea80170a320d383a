package slot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/abupdate/update_engine/pkg/gpt"
)

// ErrDiskNotFound means no whole disk holds the partition the kernel
// command line names as booted.
var ErrDiskNotFound = errors.New("slot: cannot find the disk of the booted partition")

// FindDisk returns the whole-disk device (e.g. /dev/sda, /dev/nvme0n1)
// holding the partition that cmdline names as booted (usr=, mount.usr=,
// verity.usr=, root=; PARTUUID=, PARTLABEL=, by-partuuid links or a /dev
// node). A /dev node is mapped to its disk through sysfs; a PARTUUID or
// PARTLABEL is looked for in the GPT of every whole disk in /sys/block, so
// it works without udev. Two disks holding the GUID is an error: which
// one booted cannot be told.
func FindDisk(cmdline string) (string, error) {
	params := cmdlineParams(cmdline)
	var tried []string
	for _, k := range cmdlineKeys {
		v, ok := params[k]
		if !ok {
			continue
		}
		tried = append(tried, k+"="+v)
		disk, err := diskOf(v)
		if err == nil {
			return disk, nil
		}
		if !errors.Is(err, ErrDiskNotFound) {
			return "", err
		}
	}
	if len(tried) == 0 {
		return "", fmt.Errorf("%w: kernel command line has none of %s=", ErrDiskNotFound, strings.Join(cmdlineKeys, "=, "))
	}
	return "", fmt.Errorf("%w: %s", ErrDiskNotFound, strings.Join(tried, " "))
}

func cmdlineParams(cmdline string) map[string]string {
	params := map[string]string{}
	for _, f := range strings.Fields(cmdline) {
		if f == "--" {
			break // the rest belongs to init
		}
		if k, v, ok := strings.Cut(f, "="); ok {
			params[k] = strings.Trim(v, `"`)
		}
	}
	return params
}

// diskOf resolves one command-line value to a whole disk.
func diskOf(v string) (string, error) {
	var guid, label string
	switch {
	case hasPrefixFold(v, "PARTUUID="):
		guid = v[len("PARTUUID="):]
	case hasPrefixFold(v, "PARTLABEL="):
		label = v[len("PARTLABEL="):]
	case strings.HasPrefix(v, "/dev/disk/by-partuuid/"):
		guid = strings.TrimPrefix(v, "/dev/disk/by-partuuid/")
	case strings.HasPrefix(v, "/dev/disk/by-partlabel/"):
		label = strings.TrimPrefix(v, "/dev/disk/by-partlabel/")
	case strings.HasPrefix(v, "/dev/"):
		return parentDisk(v)
	default:
		guid = v
	}
	var want gpt.GUID
	if guid != "" {
		g, err := gpt.ParseGUID(guid)
		if err != nil {
			return "", fmt.Errorf("%w: %q is not a GUID", ErrDiskNotFound, guid)
		}
		want = g
	}
	disks, err := filepath.Glob("/sys/block/*")
	if err != nil {
		return "", err
	}
	sort.Strings(disks)
	var found []string
	for _, s := range disks {
		dev := filepath.Join("/dev", filepath.Base(s))
		if holds(dev, want, label) {
			found = append(found, dev)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: no disk holds %s", ErrDiskNotFound, v)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("slot: %s is on several disks (%s); name the disk explicitly", v, strings.Join(found, ", "))
}

// holds reports whether the GPT of dev has a partition with GUID want (or,
// when want is zero, with label).
func holds(dev string, want gpt.GUID, label string) bool {
	var size int64
	if readInt(filepath.Join("/sys/block", filepath.Base(dev), "size"), &size) != nil || size == 0 {
		return false // empty loop devices, ejected media
	}
	d, err := gpt.Open(dev, os.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer d.Close()
	tab, _, err := d.Read()
	if err != nil {
		return false
	}
	if want.IsZero() {
		_, err = tab.FindLabel(label)
	} else {
		_, err = tab.FindGUID(want)
	}
	return err == nil
}

// parentDisk maps a partition node (/dev/sda3, /dev/nvme0n1p3, or a
// symlink to one) to its whole disk through sysfs.
func parentDisk(node string) (string, error) {
	real, err := filepath.EvalSymlinks(node)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrDiskNotFound, err)
	}
	name := filepath.Base(real)
	sys, err := filepath.EvalSymlinks(filepath.Join("/sys/class/block", name))
	if err != nil {
		return "", fmt.Errorf("%w: %s is not a block device: %v", ErrDiskNotFound, node, err)
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err != nil {
		return "", fmt.Errorf("%w: %s is not a partition", ErrDiskNotFound, node)
	}
	return filepath.Join("/dev", filepath.Base(filepath.Dir(sys))), nil
}
