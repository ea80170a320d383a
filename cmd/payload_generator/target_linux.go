package main

import (
	"os"
	"syscall"
)

type target struct {
	f      *os.File
	direct bool
	size   int64 // 0: a regular file, grown as needed
}

// openTarget opens a block device O_DIRECT (with its size as the bound) or
// a regular file, created when missing; direct forces O_DIRECT on files.
func openTarget(name string, direct bool) (*target, error) {
	st, err := os.Stat(name)
	isDev := err == nil && st.Mode()&os.ModeDevice != 0
	flags := os.O_RDWR
	if !isDev {
		flags |= os.O_CREATE
	}
	if isDev || direct {
		flags |= syscall.O_DIRECT
	}
	f, err := os.OpenFile(name, flags, 0o644)
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
