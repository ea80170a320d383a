package rebootmgr

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// DefaultCoordinatorConf is where update coordinators announce themselves.
const DefaultCoordinatorConf = "/run/update-engine/coordinator.conf"

// Coordinator states, as locksmithd writes them.
const (
	StateStarting      = "starting"
	StateDisabled      = "disabled"
	StateRunning       = "running"
	StateRebootPlanned = "reboot-planned"
	StateRebooting     = "rebooting"
)

// ErrCoordinatorBusy: another process holds the coordinator file's lock.
var ErrCoordinatorBusy = errors.New("rebootmgr: another update coordinator is running")

// Coordinator owns coordinator.conf: it holds an exclusive flock on it
// from OpenCoordinator to Close and rewrites it in place on every state
// change (NAME=, STRATEGY=, STATE=).
type Coordinator struct {
	name, strategy string

	mu sync.Mutex // guards f
	f  *os.File
}

// OpenCoordinator creates path if needed, takes the exclusive lock (or
// fails with ErrCoordinatorBusy) and writes STATE=starting.
func OpenCoordinator(path, name, strategy string) (*Coordinator, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("rebootmgr: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("rebootmgr: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked", ErrCoordinatorBusy, path)
		}
		return nil, fmt.Errorf("rebootmgr: flock %s: %w", path, err)
	}
	c := &Coordinator{name: name, strategy: strategy, f: f}
	return c, c.SetState(StateStarting)
}

// SetState rewrites the file with state.
func (c *Coordinator) SetState(state string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return fmt.Errorf("rebootmgr: coordinator file closed")
	}
	body := fmt.Sprintf("NAME=%s\nSTRATEGY=%s\nSTATE=%s\n", c.name, c.strategy, state)
	if err := c.f.Truncate(0); err != nil {
		return fmt.Errorf("rebootmgr: coordinator file: %w", err)
	}
	if _, err := c.f.WriteAt([]byte(body), 0); err != nil {
		return fmt.Errorf("rebootmgr: coordinator file: %w", err)
	}
	return nil
}

// Close releases the lock; the file stays.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.f = nil
	return err
}
