package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// v2 is a group in the unified hierarchy holding the whole process (the io
// controller is not threaded; see the package doc).
//
// Layout: the process's own cgroup O (e.g. /system.slice/update-engine.service)
// gets one child, O/<Name>, the limited group. The kernel's "no internal
// processes" rule says a non-root cgroup that enables a controller for its
// children in cgroup.subtree_control may hold no processes itself, so the
// order is fixed:
//
//	New:   mkdir O/<Name>; move the process into it (O is now empty);
//	       write "+io" to O's cgroup.subtree_control unless io was on
//	       already; write io.max.
//	Close: write "-io" to O's cgroup.subtree_control if New turned it on
//	       and no other child of O uses io (its own subtree_control or a
//	       non-empty io.max); move the process back to O (allowed again:
//	       O enables nothing); rmdir O/<Name>.
//
// That leaves the hierarchy as New found it. Two other layouts were
// rejected: a sibling of O (O's parent belongs to systemd: Delegate=io
// hands over O's subtree only, and a group beside the unit is a group
// systemd does not know), and keeping the process in a second leaf child
// of O after Close (it would not be back where it started, and the next
// New would find O holding a group it did not make). Only O's own
// cgroup.subtree_control is written, never an ancestor's: if O's
// cgroup.controllers lacks io, the ancestors do not hand it down and that
// is the delegation's business (Delegate=io), reported as ErrUnavailable.
//
// O must hold no other process (the rule again): a login session, a CI
// job or a test whose dbus-daemon child shares O makes New fail with
// ErrShared, before anything is moved.
type v2 struct {
	root   string // unified mountpoint
	origin string // O: the process's cgroup before New
	group  string // O/<Name>
	pid    int

	major, minor uint32 // the disk the limit is on

	enabledIO bool // New wrote "+io" to O's cgroup.subtree_control
}

func newV2(cfg Config, major, minor uint32) (*v2, error) {
	root := cfg.Root
	if root == "" {
		root = "/sys/fs/cgroup"
	}
	origin := "/"
	if cfg.Root == "" {
		o, err := cgroupOf("/proc/self/cgroup", "")
		if err != nil {
			return nil, err
		}
		origin = o
	}
	v := &v2{root: root, origin: origin, group: path.Join(origin, cfg.Name), pid: os.Getpid(), major: major, minor: minor}
	odir := v.originDir()
	// The io controller may be missing: held by v1 blkio on a hybrid host,
	// or not delegated to this subtree. Say so before moving anything.
	ctrl, err := os.ReadFile(filepath.Join(odir, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !slices.Contains(strings.Fields(string(ctrl)), "io") {
		return nil, fmt.Errorf("%w: no io controller in %s (it offers %q; on a hybrid host v1 blkio holds it, else it needs Delegate=io)",
			ErrUnavailable, odir, strings.TrimSpace(string(ctrl)))
	}
	if origin != "/" {
		// The root cgroup is exempt from the rule; every other one must
		// be ours alone.
		if others := v.otherProcs(); len(others) > 0 {
			return nil, fmt.Errorf("%w: %s also holds process(es) %s", ErrShared, odir, strings.Join(others, " "))
		}
	}
	switch err := os.Mkdir(v.dir(), 0o755); {
	case err == nil:
	case errors.Is(err, os.ErrExist):
		// Left behind by a killed process: empty, so reusable. One with
		// processes in it belongs to a live Limiter of the same Name.
		if p, _ := os.ReadFile(filepath.Join(v.dir(), "cgroup.procs")); len(strings.TrimSpace(string(p))) > 0 {
			return nil, fmt.Errorf("%w: %s is in use by process(es) %s", ErrInvalidConfig, v.dir(), strings.Join(strings.Fields(string(p)), " "))
		}
	default:
		return nil, fmt.Errorf("cgroup: creating %s: %w", v.dir(), err)
	}
	if err := v.moveTo(v.dir()); err != nil {
		return nil, errors.Join(fmt.Errorf("cgroup: moving process into %s: %w", v.dir(), err), v.remove())
	}
	if !v.subtreeHasIO(odir) {
		if err := writeControl(filepath.Join(odir, "cgroup.subtree_control"), "+io"); err != nil {
			if errors.Is(err, syscall.EBUSY) {
				// A process arrived in O after the check above.
				err = fmt.Errorf("%w: %s holds other processes: %v", ErrShared, odir, err)
			} else {
				err = fmt.Errorf("cgroup: enabling io in %s: %w", odir, err)
			}
			return nil, errors.Join(err, v.leave(0), v.remove())
		}
		v.enabledIO = true
	}
	if err := v.setRate(cfg.WriteBPS); err != nil {
		return nil, errors.Join(err, v.leave(0), v.remove())
	}
	return v, nil
}

func (v *v2) originDir() string { return filepath.Join(v.root, v.origin) }

func (v *v2) dir() string { return filepath.Join(v.root, v.group) }

// otherProcs lists the processes in O other than this one.
func (v *v2) otherProcs() []string {
	b, _ := os.ReadFile(filepath.Join(v.originDir(), "cgroup.procs"))
	var others []string
	for _, p := range strings.Fields(string(b)) {
		if p != strconv.Itoa(v.pid) {
			others = append(others, p)
		}
	}
	return others
}

// subtreeHasIO reports whether dir enables io for its children. The
// kernel lists "io"; a fake hierarchy holds what was written ("+io").
func (v *v2) subtreeHasIO(dir string) bool {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	for _, f := range strings.Fields(string(b)) {
		if strings.TrimPrefix(f, "+") == "io" {
			return true
		}
	}
	return false
}

// othersUseIO names O's children besides the group that use io: they
// enable it below them or have a limit of their own.
func (v *v2) othersUseIO() []string {
	ents, _ := os.ReadDir(v.originDir())
	var users []string
	for _, e := range ents {
		if !e.IsDir() || e.Name() == path.Base(v.group) {
			continue
		}
		d := filepath.Join(v.originDir(), e.Name())
		max, _ := os.ReadFile(filepath.Join(d, "io.max"))
		if v.subtreeHasIO(d) || len(strings.TrimSpace(string(max))) > 0 {
			users = append(users, d)
		}
	}
	return users
}

func (v *v2) moveTo(dir string) error {
	return writeControl(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(v.pid))
}

func (v *v2) setRate(bps uint64) error {
	if err := writeControl(filepath.Join(v.dir(), "io.max"), fmt.Sprintf("%d:%d wbps=%d", v.major, v.minor, bps)); err != nil {
		return fmt.Errorf("cgroup: setting io.max in %s: %w", v.dir(), err)
	}
	return nil
}

// enter is a no-op: the whole process is in the group already.
func (v *v2) enter(int) error { return nil }

// leave undoes New's "+io" (when nothing else uses io) and moves the whole
// process back to O; called once, by the thread (or by New on failure).
func (v *v2) leave(int) error {
	if v.enabledIO {
		if users := v.othersUseIO(); len(users) > 0 {
			// O must keep io for them, so the kernel will not take the
			// process back; at least lift its limit.
			lift := writeControl(filepath.Join(v.dir(), "io.max"), fmt.Sprintf("%d:%d wbps=max", v.major, v.minor))
			return errors.Join(fmt.Errorf("cgroup: the process stays in %s, unlimited: %s keeps io enabled for %s, and a cgroup that enables a controller for its children may hold no process",
				v.dir(), v.originDir(), strings.Join(users, " ")), lift)
		}
		if err := writeControl(filepath.Join(v.originDir(), "cgroup.subtree_control"), "-io"); err != nil {
			return fmt.Errorf("cgroup: disabling io in %s: %w", v.originDir(), err)
		}
		v.enabledIO = false
	}
	if err := v.moveTo(v.originDir()); err != nil {
		return fmt.Errorf("cgroup: moving process back to %s: %w", v.origin, err)
	}
	return nil
}

// remove deletes the group (a reused leftover too: it was empty and
// nobody else's).
func (v *v2) remove() error {
	// The kernel empties cgroup.procs when the process leaves; a fake
	// hierarchy's files are removed here, as rmdir would.
	if err := os.Remove(v.dir()); err != nil && !errors.Is(err, os.ErrNotExist) {
		if isCgroupFS(v.dir()) || (!errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, os.ErrExist)) {
			return fmt.Errorf("cgroup: removing %s: %w", v.dir(), err)
		}
		if err := removeFake(v.dir()); err != nil {
			return fmt.Errorf("cgroup: removing %s: %w", v.dir(), err)
		}
	}
	return nil
}

// removeFake removes a group directory whose files are regular files (a
// fake hierarchy in tests); on a real cgroup (whose control files cannot
// be unlinked) it fails with the error of the first file.
func removeFake(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			return fmt.Errorf("%s has a child group %s", dir, e.Name())
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return os.Remove(dir)
}

// writeControl writes one value to a cgroup control file (no O_CREAT on a
// real hierarchy: a missing file is an error, not a new file).
func writeControl(file, val string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(filepath.Dir(file)); serr == nil && !isCgroupFS(filepath.Dir(file)) {
			// A fake hierarchy creates its control files on first write.
			f, err = os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		}
	}
	if err != nil {
		return err
	}
	_, err = f.WriteString(val)
	return errors.Join(err, f.Close())
}

// isCgroupFS reports whether dir is on a cgroup2 file system (not a fake
// hierarchy in a temporary directory).
func isCgroupFS(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}
