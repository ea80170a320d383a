package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoPressure: the kernel offers no per-cgroup I/O pressure (PSI) to
// adapt the limit to: no /proc/pressure/io (CONFIG_PSI off or psi=0), or
// no cgroup v2 hierarchy with io.pressure files.
var ErrNoPressure = errors.New("cgroup: no I/O pressure information (PSI)")

// PSI is a PressureSource over cgroup v2 io.pressure files: the groups of
// the unified hierarchy outside the engine's own. For the engine in
// /system.slice/update-engine.service/update_engine those are every child
// of "/" but system.slice (init.scope, user.slice, …), every child of
// /system.slice but update-engine.service (one per service), and every
// other child of update-engine.service. Each is read whole (user.slice
// covers all its sessions). A hybrid host (v1 controllers) also mounts the
// unified hierarchy (/sys/fs/cgroup/unified) and keeps PSI there, even
// with no controller enabled in it.
//
// Tasks outside any such group are not seen: on a host where every
// process sits in the root group, workloads must be put in groups of
// their own for the limit to see them (systemd does this for services).
type PSI struct {
	Root string // mountpoint of the unified hierarchy
	Self string // the engine's group inside it, e.g. "/system.slice/x.service/update_engine"
}

// NewPSI finds the unified hierarchy and this process's group in it (call
// it after New, which on v2 moves the process into the limit's group), or
// returns ErrNoPressure saying what is missing. procRoot and cgroupRoot
// are normally /proc and /sys/fs/cgroup.
func NewPSI(procRoot, cgroupRoot string) (*PSI, error) {
	if _, err := os.ReadFile(filepath.Join(procRoot, "pressure", "io")); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoPressure, err)
	}
	root := ""
	for _, dir := range []string{cgroupRoot, filepath.Join(cgroupRoot, "unified")} {
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			root = dir
			break
		}
	}
	if root == "" {
		return nil, fmt.Errorf("%w: no cgroup v2 hierarchy at %s or %s/unified", ErrNoPressure, cgroupRoot, cgroupRoot)
	}
	if _, err := os.ReadFile(filepath.Join(root, "io.pressure")); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoPressure, err)
	}
	self, err := cgroupOf(filepath.Join(procRoot, "self", "cgroup"), "")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoPressure, err)
	}
	return &PSI{Root: root, Self: self}, nil
}

// Stalls returns the "some" stall total of every group that sits beside a
// group on Self's path, or under Self, keyed by its path.
// Groups that vanish while being read are left out.
func (p *PSI) Stalls() (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	self := path.Clean("/" + p.Self)
	// Walk from the root down to Self; at each level read the children
	// that are not on the path. Self's own children hold no engine task
	// (a process is in one group only), so they count too.
	dir := "/"
	for {
		next := ""
		if dir != self {
			rest := strings.TrimPrefix(self, strings.TrimSuffix(dir, "/")+"/")
			next, _, _ = strings.Cut(rest, "/")
		}
		ents, err := os.ReadDir(filepath.Join(p.Root, dir))
		if err != nil {
			return nil, fmt.Errorf("cgroup: reading %s: %w", filepath.Join(p.Root, dir), err)
		}
		for _, e := range ents {
			if !e.IsDir() || e.Name() == next {
				continue
			}
			g := path.Join(dir, e.Name())
			total, err := readSomeTotal(filepath.Join(p.Root, g, "io.pressure"))
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EOPNOTSUPP) {
				continue // removed meanwhile, or its PSI is off (cgroup.pressure 0)
			}
			if err != nil {
				return nil, err
			}
			out[g] = total
		}
		if next == "" {
			break
		}
		dir = path.Join(dir, next)
	}
	return out, nil
}

// readSomeTotal returns the total= field of the "some" line of a PSI
// file, in microseconds as the kernel counts it.
func readSomeTotal(file string) (time.Duration, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "some" {
			continue
		}
		for _, kv := range fields[1:] {
			if v, ok := strings.CutPrefix(kv, "total="); ok {
				us, err := strconv.ParseUint(v, 10, 63)
				if err != nil {
					return 0, fmt.Errorf("cgroup: %s: bad total %q", file, v)
				}
				return time.Duration(us) * time.Microsecond, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("cgroup: %s: no \"some ... total=\" line", file)
}
