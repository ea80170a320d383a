package rebootmgr

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/abupdate/update_engine/pkg/atomicfile"
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

// SaveIntent writes in atomically and durably (pkg/atomicfile).
func SaveIntent(path string, in Intent) error {
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("rebootmgr: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("rebootmgr: %w", err)
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("rebootmgr: save state %s: %w", path, err)
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
