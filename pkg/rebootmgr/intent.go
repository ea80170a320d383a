package rebootmgr

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// DefaultStateFile is where the reboot intent is kept across restarts.
const DefaultStateFile = "/var/lib/update-engine-reboot-manager/intent.json"

// Intent phases.
const (
	// PhaseNone: nothing planned.
	PhaseNone = ""
	// PhaseLocked: the fleet lock is held for this host's reboot.
	PhaseLocked = "locked"
	// PhaseRebooting: the reboot was committed to (lock held if any).
	PhaseRebooting = "rebooting"
)

// Intent is the persisted reboot plan.
type Intent struct {
	Phase string `json:"phase"`
	// Version is the update_engine new_version the reboot is for.
	Version string    `json:"version,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	// BootID is /proc/sys/kernel/random/boot_id when the phase was
	// entered, to tell a reboot from a manager restart.
	BootID string `json:"boot_id,omitempty"`
}

// LoadIntent reads path; a missing file is the zero Intent.
func LoadIntent(path string) (Intent, error) {
	var in Intent
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return in, nil
	}
	if err != nil {
		return in, fmt.Errorf("rebootmgr: %w", err)
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return Intent{}, fmt.Errorf("rebootmgr: state file %s: %w", path, err)
	}
	return in, nil
}

// SaveIntent writes in atomically: temp file in the same directory, fsync,
// rename, fsync the directory.
func SaveIntent(path string, in Intent) error {
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("rebootmgr: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("rebootmgr: %w", err)
	}
	f, err := os.CreateTemp(dir, ".reboot-intent-*")
	if err != nil {
		return fmt.Errorf("rebootmgr: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rebootmgr: save state %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// BootID returns the kernel's boot id ("" when unreadable).
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return string(bytesTrim(b))
}

func bytesTrim(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
