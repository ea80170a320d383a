package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup2"
)

// v2 is a group in the unified hierarchy holding the whole process (the io
// controller is not threaded; see the package doc).
type v2 struct {
	root   string // unified mountpoint
	group  string // path of the group inside the hierarchy
	origin string // the process's cgroup before enter
	pid    int
	m      *cgroup2.Manager

	major, minor uint32 // the disk the limit is on
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
	// The io controller may be missing: held by v1 blkio on a hybrid host,
	// or not delegated to this subtree. Say so before moving anything.
	ctrl, err := os.ReadFile(filepath.Join(root, origin, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !slices.Contains(strings.Fields(string(ctrl)), "io") {
		return nil, fmt.Errorf("%w: no io controller in %s (it offers %q; on a hybrid host v1 blkio holds it, else it needs Delegate=io)",
			ErrUnavailable, filepath.Join(root, origin), strings.TrimSpace(string(ctrl)))
	}
	v := &v2{root: root, group: path.Join(origin, cfg.Name), origin: origin, pid: os.Getpid(), major: major, minor: minor}
	m, err := cgroup2.NewManager(root, v.group, &cgroup2.Resources{})
	if err != nil {
		return nil, fmt.Errorf("cgroup: creating %s: %w", v.dir(), err)
	}
	v.m = m
	// Move the process in first: the parent may only enable "io" for its
	// children once it holds no processes itself (unless it is the root).
	if err := m.AddProc(uint64(v.pid)); err != nil {
		return nil, errors.Join(fmt.Errorf("cgroup: moving process into %s: %w", v.dir(), err), m.Delete())
	}
	err = m.ToggleControllers([]string{"io"}, cgroup2.Enable)
	if err == nil {
		err = v.setRate(cfg.WriteBPS)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("cgroup: setting io.max in %s: %w", v.dir(), err), v.leave(0), v.remove())
	}
	return v, nil
}

func (v *v2) setRate(bps uint64) error {
	return v.m.Update(&cgroup2.Resources{IO: &cgroup2.IO{Max: []cgroup2.Entry{{
		Type: cgroup2.WriteBPS, Major: int64(v.major), Minor: int64(v.minor), Rate: bps,
	}}}})
}

func (v *v2) dir() string { return filepath.Join(v.root, v.group) }

// enter is a no-op: the whole process is in the group already.
func (v *v2) enter(int) error { return nil }

// leave moves the whole process back; called once, by the thread.
func (v *v2) leave(int) error {
	back, err := cgroup2.Load(v.origin, cgroup2.WithMountpoint(v.root))
	if err == nil {
		err = back.AddProc(uint64(v.pid))
	}
	if err != nil {
		return fmt.Errorf("cgroup: moving process back to %s: %w", v.origin, err)
	}
	return nil
}

func (v *v2) remove() error {
	if err := v.m.Delete(); err != nil {
		return fmt.Errorf("cgroup: removing %s: %w", v.dir(), err)
	}
	return nil
}
