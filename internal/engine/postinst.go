package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// SlotPostinst runs the post-install program the new image carries, as
// Flatcar does: the verified passive partition is mounted read-only and
// `<mnt>/<Program> <device>` runs with ExecPostinst's rules (timeout,
// proxy environment, exit 3 = code 19). An image without the program, a
// passive slot that is not a block device (an image file), or a file
// system this kernel cannot mount read-only are skipped with a log line:
// the payload was verified already, and not every image is a mountable
// file system with a post-install step.
type SlotPostinst struct {
	Program string        // path inside the image; "" = "postinst"
	Timeout time.Duration // 0 = 10 min
	Log     *slog.Logger  // nil = discard
}

// Run implements Postinstaller.
func (p SlotPostinst) Run(ctx context.Context, device string, plan *Plan) error {
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fi, err := os.Stat(device)
	if err != nil {
		return fmt.Errorf("post-install: %w", err)
	}
	if fi.Mode()&os.ModeDevice == 0 {
		log.Info("post-install skipped: the passive slot is not a block device", "device", device)
		return nil
	}
	mnt, err := os.MkdirTemp("", "update_engine-postinst-")
	if err != nil {
		return fmt.Errorf("post-install: %w", err)
	}
	defer os.Remove(mnt)
	if err := mountReadOnly(device, mnt); err != nil {
		log.Warn("post-install skipped: cannot mount the new image read-only", "device", device, "err", err)
		return nil
	}
	defer func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			log.Warn("unmounting the new image failed; detaching it", "mnt", mnt, "err", err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	}()
	prog := filepath.Join(mnt, filepath.Clean("/"+cmp.Or(p.Program, "postinst")))
	if _, err := os.Stat(prog); errors.Is(err, os.ErrNotExist) {
		log.Info("the new image has no post-install program", "path", prog)
		return nil
	}
	log.Info("running the new image's post-install program", "program", prog, "device", device)
	return ExecPostinst{Path: prog, Timeout: p.Timeout}.Run(ctx, device, plan)
}

// mountReadOnly tries the file systems an OS image is commonly built
// with.
func mountReadOnly(device, mnt string) error {
	var errs []error
	for _, fs := range []string{"ext4", "erofs", "squashfs", "btrfs", "ext2"} {
		err := unix.Mount(device, mnt, fs, unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, "")
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", fs, err))
	}
	return errors.Join(errs...)
}
