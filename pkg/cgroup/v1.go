package cgroup

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sync"

	"github.com/containerd/cgroups/v3/cgroup1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// v1 is a group in the v1 blkio hierarchy holding only the writer thread.
type v1 struct {
	hier  cgroup1.Hierarchy // blkio only, at root
	root  string            // mountpoint holding "blkio"
	group string            // path of the group inside the hierarchy
	cg    cgroup1.Cgroup
	fake  bool // Config.Root was set: no /proc lookups

	major, minor uint32 // the disk the limit is on

	mu     sync.Mutex // guards origin
	origin string     // cgroup the thread came from
}

func newV1(cfg Config, major, minor uint32) (*v1, error) {
	root := cfg.Root
	if root == "" {
		root = "/sys/fs/cgroup"
	}
	if _, err := os.Stat(filepath.Join(root, string(cgroup1.Blkio), "tasks")); err != nil && cfg.Root == "" {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	parent := "/"
	if cfg.Root == "" {
		p, err := cgroupOf("/proc/self/cgroup", string(cgroup1.Blkio))
		if err != nil {
			return nil, err
		}
		parent = p
	}
	v := &v1{
		hier: func() ([]cgroup1.Subsystem, error) {
			return []cgroup1.Subsystem{cgroup1.NewBlkio(root)}, nil
		},
		root:  root,
		group: path.Join(parent, cfg.Name),
		fake:  cfg.Root != "",
	}
	v.major, v.minor = major, minor
	cg, err := cgroup1.New(cgroup1.StaticPath(v.group), v.resources(cfg.WriteBPS), cgroup1.WithHierarchy(v.hier))
	if err != nil {
		// The group directory may exist already; remove it on failure.
		_ = os.Remove(v.dir())
		return nil, fmt.Errorf("cgroup: creating blkio group %s: %w", v.group, err)
	}
	v.cg = cg
	return v, nil
}

// resources is the blkio write limit of bps on the disk.
func (v *v1) resources(bps uint64) *specs.LinuxResources {
	return &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{
		ThrottleWriteBpsDevice: []specs.LinuxThrottleDevice{{
			LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: int64(v.major), Minor: int64(v.minor)},
			Rate:               bps,
		}},
	}}
}

func (v *v1) setRate(bps uint64) error {
	if err := v.cg.Update(v.resources(bps)); err != nil {
		return fmt.Errorf("cgroup: setting the write limit of %s: %w", v.dir(), err)
	}
	return nil
}

func (v *v1) dir() string { return filepath.Join(v.root, string(cgroup1.Blkio), v.group) }

func (v *v1) enter(tid int) error {
	origin := "/"
	if !v.fake {
		o, err := cgroupOf(fmt.Sprintf("/proc/self/task/%d/cgroup", tid), string(cgroup1.Blkio))
		if err != nil {
			return err
		}
		origin = o
	}
	v.mu.Lock()
	v.origin = origin
	v.mu.Unlock()
	if err := v.cg.AddTask(cgroup1.Process{Pid: tid}, cgroup1.Blkio); err != nil {
		return fmt.Errorf("cgroup: adding thread %d to %s: %w", tid, v.dir(), err)
	}
	return nil
}

func (v *v1) leave(tid int) error {
	v.mu.Lock()
	origin := v.origin
	v.mu.Unlock()
	back, err := cgroup1.Load(cgroup1.StaticPath(origin), cgroup1.WithHierarchy(v.hier))
	if err == nil {
		err = back.AddTask(cgroup1.Process{Pid: tid}, cgroup1.Blkio)
	}
	if err != nil {
		return fmt.Errorf("cgroup: moving thread %d back to %s: %w", tid, origin, err)
	}
	return nil
}

func (v *v1) remove() error {
	if err := v.cg.Delete(); err != nil {
		return fmt.Errorf("cgroup: removing %s: %w", v.dir(), err)
	}
	if _, err := os.Stat(v.dir()); err == nil {
		return fmt.Errorf("cgroup: %s still exists after delete", v.dir())
	}
	return nil
}
