package parts

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/internal/update"
	"github.com/abupdate/update_engine/pkg/omaha"
)

// SlotPostinst runs the post-install program the new image carries, as
// Flatcar does: the verified passive partition is mounted read-only and
// `<mnt>/<Program> <device> [KERNEL=<path>] [PCR_POLICY=<path>]` runs
// with ExecPostinst's rules (timeout,
// proxy environment, exit 3 = code 19). As in Flatcar, post-install is
// part of the update: a passive slot without a partition node to mount,
// an image this kernel cannot mount, or an image without the program fail
// the update with code 5 (PostinstallRunnerError), before the flip. A host
// whose images have no post-install step says so (the daemon's
// --postinst -).
//
// The mount lives in a private mount namespace of one OS thread and of
// the program it starts: no other process sees it, and it ends with them,
// so a daemon killed during post-install leaves nothing mounted.
// (cmd/update_engine pins its main goroutine to the main thread, so this
// thread is never the process's main thread.)
type SlotPostinst struct {
	Program string        // path inside the image; "" = "postinst"
	Timeout time.Duration // 0 = 10 min
	Log     *slog.Logger  // nil = discard
}

// mountPrefix names the mount points' directories in os.TempDir().
const mountPrefix = "update_engine-postinst-"

// Run mounts device read-only and runs the image's program on it.
func (p SlotPostinst) Run(ctx context.Context, device string, plan *update.Plan) error {
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fi, err := os.Stat(device)
	if err != nil {
		return fmt.Errorf("post-install: %w", err)
	}
	if fi.Mode()&os.ModeDevice == 0 {
		return status.WithCode(omaha.PostinstallRunnerError, fmt.Errorf("post-install: %s is not a block device: the new image cannot be mounted (run with --postinst - when images have no post-install step)", device))
	}
	mnt, err := os.MkdirTemp("", mountPrefix)
	if err != nil {
		return fmt.Errorf("post-install: %w", err)
	}
	defer os.Remove(mnt)
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, and its mount namespace, end
		// with this goroutine.
		runtime.LockOSThread()
		done <- p.runPrivate(ctx, log, device, mnt, plan)
	}()
	return <-done
}

// runPrivate runs on a locked OS thread: it moves the thread into a
// private mount namespace, mounts the image there, and runs the program.
func (p SlotPostinst) runPrivate(ctx context.Context, log *slog.Logger, device, mnt string, plan *update.Plan) error {
	fail := func(err error) error { return status.WithCode(omaha.PostinstallRunnerError, err) }
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fail(fmt.Errorf("post-install: private mount namespace: %w", err))
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail(fmt.Errorf("post-install: private mount namespace: %w", err))
	}
	if err := mountReadOnly(device, mnt); err != nil {
		return fail(fmt.Errorf("post-install: cannot mount the new image %s read-only: %w", device, err))
	}
	defer func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			log.Warn("unmounting the new image failed; detaching it", "mnt", mnt, "err", err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	}()
	prog := filepath.Join(mnt, filepath.Clean("/"+cmp.Or(p.Program, "postinst")))
	if _, err := os.Stat(prog); err != nil {
		return fail(fmt.Errorf("post-install: the new image has no post-install program: %w", err))
	}
	log.Info("running the new image's post-install program", "program", prog, "device", device)
	return ExecPostinst{Path: prog, Timeout: p.Timeout}.Run(ctx, device, plan)
}

// Cleanup detaches what an older engine, or
// one that could not make a private namespace, left mounted (mount points
// named mountPrefix*, or the device itself mounted anywhere under the
// temporary directory) and removes the empty mount points.
func (SlotPostinst) Cleanup(device string) error {
	// The mounts of this thread's namespace, the one it unmounts in.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return fmt.Errorf("post-install cleanup: %w", err)
	}
	tmp := filepath.Clean(os.TempDir())
	var errs []error
	for _, line := range strings.Split(string(b), "\n") {
		mp, src, ok := parseMountinfo(line)
		if !ok || filepath.Dir(mp) != tmp || !(strings.HasPrefix(filepath.Base(mp), mountPrefix) || src == device) {
			continue
		}
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	if stale, err := filepath.Glob(filepath.Join(tmp, mountPrefix+"*")); err == nil {
		for _, d := range stale {
			_ = os.Remove(d) // only when empty (not mounted)
		}
	}
	return errors.Join(errs...)
}

// parseMountinfo returns a /proc/self/mountinfo line's mount point and
// source (escapes such as \040 decoded).
func parseMountinfo(line string) (mountPoint, source string, ok bool) {
	pre, post, found := strings.Cut(line, " - ")
	f, g := strings.Fields(pre), strings.Fields(post)
	if !found || len(f) < 5 || len(g) < 2 {
		return "", "", false
	}
	return unescapeMount(f[4]), unescapeMount(g[1]), true
}

func unescapeMount(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// NoPostinst is the post-install step of a host without one.
type NoPostinst struct{}

// Run does nothing.
func (NoPostinst) Run(context.Context, string, *update.Plan) error { return nil }

// Cleanup does nothing.
func (NoPostinst) Cleanup(string) error { return nil }

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

// ExecPostinst runs a post-install program as flatcar-postinst is run:
// `Path <target-device> [KERNEL=<path>] [PCR_POLICY=<path>]` (the files
// the payload installed, Plan.PostinstArgs), with the proxy environment
// passed on and a timeout. Exit status 3 maps to code 19
// (PostinstallBootedFromFirmwareB; FUE then carries on as if the update
// succeeded, this engine fails the update with it); any other failure to
// code 5.
type ExecPostinst struct {
	Path    string
	Timeout time.Duration // 0 = 10 min
}

// Run runs the program with device. A missing program fails with code 5,
// as any other post-install failure.
func (p ExecPostinst) Run(ctx context.Context, device string, plan *update.Plan) error {
	if _, err := os.Stat(p.Path); err != nil {
		return status.WithCode(omaha.PostinstallRunnerError, fmt.Errorf("postinst: %w", err))
	}
	timeout := p.Timeout
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := []string{device}
	if plan != nil {
		args = append(args, plan.PostinstArgs...)
	}
	cmd := exec.CommandContext(cctx, p.Path, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, k := range []string{"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "all_proxy", "ALL_PROXY"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	if plan != nil {
		cmd.Env = append(cmd.Env, "NEW_VERSION="+plan.Version)
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.ExitCode() == 3:
		return status.WithCode(omaha.PostinstallBootedFromFirmwareB, fmt.Errorf("postinst %s exited 3: %s", p.Path, out))
	default:
		return status.WithCode(omaha.PostinstallRunnerError, fmt.Errorf("postinst %s: %v: %s", p.Path, err, out))
	}
}

// Cleanup does nothing: an ExecPostinst mounts nothing.
func (ExecPostinst) Cleanup(string) error { return nil }
