package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

type target struct {
	f      *os.File
	direct bool
	size   int64 // 0: a regular file, grown as needed
}

// errTargetBusy: the target block device is mounted or held open
// exclusively (O_EXCL failed with EBUSY).
var errTargetBusy = errors.New("target device is busy (mounted, or held by another program): refusing to write it")

// openTarget opens a block device O_DIRECT|O_EXCL (with its size as the
// bound) or a regular file, created when missing; direct forces O_DIRECT
// on files. O_EXCL on a block device fails with EBUSY while a file system
// on it (or, for a whole disk, on one of its partitions) is mounted.
func openTarget(name string, direct bool) (*target, error) {
	st, err := os.Stat(name)
	isDev := err == nil && st.Mode()&os.ModeDevice != 0
	flags := os.O_RDWR
	if isDev {
		flags |= os.O_EXCL
	} else {
		flags |= os.O_CREATE
	}
	if isDev || direct {
		flags |= syscall.O_DIRECT
	}
	f, err := os.OpenFile(name, flags, 0o644)
	if errors.Is(err, syscall.EBUSY) {
		return nil, fmt.Errorf("%s: %w", name, errTargetBusy)
	}
	if err != nil {
		return nil, err
	}
	t := &target{f: f, direct: isDev || direct}
	if isDev {
		if t.size, err = sizeOf(f); err != nil {
			f.Close()
			return nil, err
		}
	}
	return t, nil
}
