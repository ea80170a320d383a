// Package cgroup limits the write bandwidth of the update engine's writes
// to the passive slot, with one API over cgroup v1 (blkio controller,
// blkio.throttle.write_bps_device) and cgroup v2 (io controller, io.max
// "MAJ:MIN wbps=N"), through github.com/containerd/cgroups/v3.
//
// How the limit is applied:
//
//   - The limit is set on the whole disk that holds the passive slot
//     (major:minor of the disk, not of the partition: blk-throttle works on
//     a disk's request queue). For /dev/loop3p4 that is loop3 (7:3), for
//     /dev/sda4 it is sda (8:0).
//   - Every WriteAt (and Sync) through Limiter.WriterAt runs on one
//     dedicated OS thread (runtime.LockOSThread) owned by the Limiter.
//   - cgroup v1 (also "hybrid" hosts, where blkio is a v1 hierarchy): only
//     that thread is placed in the cgroup, by writing its TID to the group's
//     "tasks" file. D-Bus handlers, prefs checkpoints and everything else
//     in the process stay unthrottled. On Close the thread is moved back to
//     the cgroup it came from, then the group is removed.
//   - cgroup v2: the io controller is not a threaded controller, so a single
//     thread cannot be limited on its own. The whole process is moved into
//     the group (cgroup.procs), "io" is enabled in the parent's (the
//     process's own cgroup's) cgroup.subtree_control, and io.max is
//     written. Close undoes exactly that: "io" is disabled again in the
//     parent if New enabled it and no other child uses it, the process is
//     moved back, the group removed (v2.go explains the order, which the
//     kernel's no-internal-processes rule dictates). Other I/O of the
//     daemon to the same disk (small prefs writes) shares the limit; D-Bus
//     keeps answering, as it does no disk I/O. The process's cgroup must
//     hold no other process (else ErrShared) and must offer io (else
//     ErrUnavailable): under systemd the unit needs Delegate=io, as
//     dist/update-engine.service has (or use systemd's own
//     IOWriteBandwidthMax= instead).
//
// The group lives under the calling process's own cgroup of that hierarchy
// (e.g. /sys/fs/cgroup/blkio/system.slice/update-engine.service/<Name>).
// A group left behind by a killed process is empty and is reused by the
// next New with the same Name.
//
// Buffered writes: v1 blkio throttling only sees I/O that the writing task
// submits itself, i.e. O_DIRECT writes. Buffered writes are issued later by
// the kernel's flusher threads and escape the limit. Open the passive slot
// with O_DIRECT (4096-aligned offsets, lengths and buffers) when a Limiter
// is in use. v2 attributes writeback to the cgroup and limits buffered
// writes too, but O_DIRECT is still what keeps the page cache clean.
//
// CPU: NiceThread lowers the scheduling priority of the calling goroutine's
// thread (setpriority on the TID), for payload decoding goroutines. It works
// the same on v1, v2 and without cgroups.
//
// The limit may move while writers run (SetWriteBPS). Adaptive moves it
// from the I/O pressure (Linux PSI) of the host's other workloads, read by
// PSI from cgroup v2 io.pressure files: AIMD between a floor and a ceiling
// (adaptive.go, psi.go).
//
// A nil *Limiter is valid: its writers write directly, unlimited.
package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/cgroups/v3"
)

// Errors. None of these is an update failure by itself: when New fails the
// engine may log it and write unlimited. Errors returned by a Writer's
// WriteAt are the underlying writer's errors or ErrClosed, and map to
// update_engine code DownloadWriteError (14).
var (
	// ErrUnavailable: the host has no usable cgroup hierarchy with a blkio
	// (v1) or io (v2) controller.
	ErrUnavailable = errors.New("cgroup: no blkio/io cgroup controller available")
	// ErrShared: on cgroup v2 the process's cgroup holds other processes
	// too (a login session, a CI job, a test's helper daemons), so the
	// kernel refuses to enable io for a child group of it. Run the engine
	// as its own service (dist/update-engine.service, Delegate=io).
	ErrShared = errors.New("cgroup: the process shares its cgroup v2 group with other processes")
	// ErrNotBlockDevice: Config.Device is neither a block device node nor
	// "major:minor".
	ErrNotBlockDevice = errors.New("cgroup: not a block device")
	// ErrInvalidConfig: a Config field is out of range.
	ErrInvalidConfig = errors.New("cgroup: invalid config")
	// ErrClosed: the Limiter was closed.
	ErrClosed = errors.New("cgroup: limiter closed")
)

// DefaultName is the cgroup name used when Config.Name is empty.
const DefaultName = "update_engine"

// Config describes one limit.
type Config struct {
	// Name of the cgroup, created under the process's own cgroup (under
	// "/" of Root when Root is set). A single path element; default
	// DefaultName.
	Name string
	// Device is the passive slot (or its disk): a block device path such
	// as /dev/loop3p4 or /dev/sda4, or "major:minor". The limit is set on
	// the whole disk containing it.
	Device string
	// WriteBPS is the write limit in bytes per second; must be > 0.
	WriteBPS uint64
	// Root is the cgroup mountpoint: the directory holding the "blkio"
	// hierarchy for v1, the unified hierarchy for v2. Empty means
	// /sys/fs/cgroup. Tests point it at a fake hierarchy in t.TempDir().
	Root string
	// Version forces cgroup v1 or v2; 0 detects it with cgroups.Mode()
	// (v1 for legacy and hybrid hosts, v2 for unified ones). When Root is
	// set, Version must be set too.
	Version int
	// SysRoot is where sysfs is mounted, to find the disk of a partition;
	// empty means /sys.
	SysRoot string
}

// backend places threads into, and removes, one cgroup.
type backend interface {
	// enter puts the calling locked OS thread tid into the group.
	enter(tid int) error
	// leave moves tid back to where enter found it.
	leave(tid int) error
	// remove deletes the group (after leave).
	remove() error
	// dir returns the group's directory, for tests and logs.
	dir() string
	// setRate rewrites the group's write limit.
	setRate(bps uint64) error
}

// Limiter owns one cgroup and the OS thread that writes inside it. Create
// it with New and release it with Close.
type Limiter struct {
	be           backend // immutable
	major, minor uint32  // immutable: the disk the limit is on

	rateMu sync.Mutex    // serialises SetWriteBPS
	rate   atomic.Uint64 // the limit in force, bytes/s

	reqs chan func()   // work for the thread
	quit chan struct{} // closed by Close
	done chan struct{} // closed when the thread has left the group

	closeOnce sync.Once
	leaveErr  error // written by the thread before done is closed

	bytes  atomic.Int64 // bytes written through all Writers
	writes atomic.Int64 // WriteAt calls
	busy   atomic.Int64 // nanoseconds spent inside WriteAt
	first  atomic.Int64 // Unix nanoseconds: start of the first WriteAt (0 = none yet)
	last   atomic.Int64 // Unix nanoseconds: end of the latest WriteAt
}

// New creates the cgroup with the write limit and starts the writer thread
// inside it. ctx only bounds the setup.
func New(ctx context.Context, cfg Config) (*Limiter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if strings.ContainsAny(cfg.Name, "/\n ") || cfg.Name == "." || cfg.Name == ".." {
		return nil, fmt.Errorf("%w: name %q must be one path element", ErrInvalidConfig, cfg.Name)
	}
	if cfg.WriteBPS == 0 {
		return nil, fmt.Errorf("%w: WriteBPS must be > 0", ErrInvalidConfig)
	}
	if cfg.Root != "" && cfg.Version == 0 {
		return nil, fmt.Errorf("%w: Version must be set with Root", ErrInvalidConfig)
	}
	if cfg.SysRoot == "" {
		cfg.SysRoot = "/sys"
	}
	major, minor, err := diskOf(cfg.Device, cfg.SysRoot)
	if err != nil {
		return nil, err
	}
	version := cfg.Version
	if version == 0 {
		switch cgroups.Mode() {
		case cgroups.Legacy, cgroups.Hybrid:
			version = 1
		case cgroups.Unified:
			version = 2
		default:
			return nil, ErrUnavailable
		}
	}
	var be backend
	switch version {
	case 1:
		be, err = newV1(cfg, major, minor)
	case 2:
		be, err = newV2(cfg, major, minor)
	default:
		return nil, fmt.Errorf("%w: Version %d", ErrInvalidConfig, cfg.Version)
	}
	if err != nil {
		return nil, err
	}
	l := &Limiter{
		be: be, major: major, minor: minor,
		reqs: make(chan func()),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	l.rate.Store(cfg.WriteBPS)
	started := make(chan error, 1)
	go l.thread(started)
	if err := <-started; err != nil {
		<-l.done
		return nil, errors.Join(err, be.remove())
	}
	return l, nil
}

// Device returns the major:minor of the disk the limit is set on.
func (l *Limiter) Device() string {
	if l == nil {
		return ""
	}
	return fmt.Sprintf("%d:%d", l.major, l.minor)
}

// Dir returns the directory of the cgroup (empty for a nil Limiter).
func (l *Limiter) Dir() string {
	if l == nil {
		return ""
	}
	return l.be.dir()
}

// WriteBPS returns the write limit in force, in bytes per second (0 for a
// nil Limiter: unlimited).
func (l *Limiter) WriteBPS() uint64 {
	if l == nil {
		return 0
	}
	return l.rate.Load()
}

// SetWriteBPS changes the write limit of the group while writers run
// (blkio.throttle.write_bps_device on v1, io.max on v2); the kernel
// applies it to the next requests. bps must be > 0. Safe for concurrent
// use; on a nil Limiter it does nothing.
func (l *Limiter) SetWriteBPS(bps uint64) error {
	if l == nil {
		return nil
	}
	if bps == 0 {
		return fmt.Errorf("%w: WriteBPS must be > 0", ErrInvalidConfig)
	}
	l.rateMu.Lock()
	defer l.rateMu.Unlock()
	select {
	case <-l.quit:
		return ErrClosed
	default:
	}
	if l.rate.Load() == bps {
		return nil
	}
	if err := l.be.setRate(bps); err != nil {
		return err
	}
	l.rate.Store(bps)
	return nil
}

// Stats are running totals over every Writer of a Limiter.
type Stats struct {
	Bytes  int64         // bytes written
	Writes int64         // WriteAt calls
	Busy   time.Duration // wall time spent inside WriteAt, throttling included
	// First is when the first WriteAt started, Last when the latest one
	// ended (zero before any write): Bytes over Last-First is the rate the
	// writes achieved, the limit's effect included.
	First, Last time.Time
}

// Stats returns the running totals. Busy minus Bytes at the disk's
// unthrottled speed is the time spent throttled; the engine reports Busy
// as its upper bound.
func (l *Limiter) Stats() Stats {
	if l == nil {
		return Stats{}
	}
	st := Stats{Bytes: l.bytes.Load(), Writes: l.writes.Load(), Busy: time.Duration(l.busy.Load())}
	if f := l.first.Load(); f != 0 {
		st.First, st.Last = time.Unix(0, f), time.Unix(0, l.last.Load())
	}
	return st
}

// Close stops the writer thread, moves it (v2: the process) back out of
// the group and removes the group. Writes in progress finish first; later
// ones fail with ErrClosed. Close is idempotent.
func (l *Limiter) Close() error {
	if l == nil {
		return nil
	}
	var err error
	l.closeOnce.Do(func() {
		close(l.quit)
		<-l.done
		err = l.leaveErr
		if err == nil {
			// A group still holding the process (v2) or thread (v1)
			// cannot be removed; leave it and report why.
			err = l.be.remove()
		}
	})
	return err
}

// cgroupOf returns the cgroup path that procFile (/proc/self/cgroup, or
// /proc/self/task/<tid>/cgroup for one thread) lists for the hierarchy
// that has controller (v1), or for the unified one (controller "").
func cgroupOf(procFile, controller string) (string, error) {
	b, err := os.ReadFile(procFile)
	if err != nil {
		return "", fmt.Errorf("cgroup: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if controller == "" && parts[0] == "0" && parts[1] == "" {
			return path.Clean("/" + parts[2]), nil
		}
		for _, c := range strings.Split(parts[1], ",") {
			if controller != "" && c == controller {
				return path.Clean("/" + parts[2]), nil
			}
		}
	}
	return "", fmt.Errorf("%w: %s lists no %q hierarchy", ErrUnavailable, procFile, controller)
}
