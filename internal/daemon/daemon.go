// Package daemon wires the update engine together: configuration
// (internal/config) → the A/B slots (internal/slot, with the cgroup write
// limit of pkg/cgroup) → the engine (internal/engine, talking Omaha through
// pkg/omaha and applying with pkg/payload) → the D-Bus service
// (internal/dbusapi) → Prometheus metrics (internal/metrics).
//
// Run blocks until its context ends (SIGTERM in cmd/update_engine), then
// releases the bus names, stops the engine and the metrics server, and
// returns.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/abupdate/update_engine/internal/config"
	"github.com/abupdate/update_engine/internal/engine"
	"github.com/abupdate/update_engine/internal/metrics"
	"github.com/abupdate/update_engine/pkg/cgroup"
	"github.com/abupdate/update_engine/pkg/payload"
	"github.com/abupdate/update_engine/pkg/update1"
)

// Options are the daemon's command-line settings. Config keys set by
// flags go in Overrides (they beat update.conf).
type Options struct {
	Bus        string // D-Bus address; "" = the system bus
	Disk       string // disk device or image file holding the A/B slots; "" = the disk of the booted partition (/proc/cmdline)
	Booted     string // booted slot override ("A", "B", label, PARTUUID=…); "" = /proc/cmdline
	BootID     string // this boot's id; "" = config's (/proc/sys/kernel/random/boot_id)
	ConfigRoot string // prefix for every config file ("" = /)
	Overrides  map[string]string

	PrefsDir           string // "" = config's UPDATE_ENGINE_PREFS_DIR
	RunDir             string // where the update-completed marker lives; "" = /var/run
	RebootRequiredFile string // "" = /run/reboot-required; "-" = none

	Postinst        string        // post-install program run with the passive device; "" = the new image's /postinst, "-" = none
	PostinstTimeout time.Duration // 0 = 10 min

	// BootDir is where the ESP is mounted: a Flatcar payload's kernel is
	// installed as flatcar/vmlinuz-a|b there. "" = /boot.
	BootDir string
	// PCRPolicyDir receives a Flatcar payload's PCR policy (pcrs-a|b.zip);
	// "" = the prefs directory's parent (/var/lib/update_engine).
	PCRPolicyDir string

	TPM        string // "" = no anti-rollback floor; a device path or host:port (swtpm)
	RequireTPM bool
	MeasurePCR int // with TPM: PCR extended with the new image's hash at flip; 0 = none

	AutoCheck     bool          // scheduled checks (Flatcar: 7 min after start, every 45 min)
	InitialDelay  time.Duration // 0 = 7 min
	CheckInterval time.Duration // 0 = 45 min
	NoHealthGate  bool          // do not mark the booted slot good
	// AllowOmahaURL honours the omaha_url of the ChromeOS AttemptUpdate(s,s)
	// for that one check; otherwise such a request is refused (it would let
	// any caller allowed to start a check choose the update server).
	AllowOmahaURL bool

	// InsecureAllowUnsignedPayloads applies payloads without checking
	// their signature when no public key file exists (development only).
	// Without it, no key means every payload is refused.
	InsecureAllowUnsignedPayloads bool

	// CheckpointBytes is the payload distance between resumable
	// checkpoints (each syncs the slot and writes prefs); 0 = 4 MiB.
	CheckpointBytes int64

	Log *slog.Logger
}

// MarkerName is Flatcar's update-completed marker in the run directory.
const MarkerName = "update_engine_autoupdate_completed"

// ErrNoDisk is returned when Options.Disk is empty and the kernel command
// line names no partition on a GPT disk.
var ErrNoDisk = errors.New("daemon: no disk given (--disk DEV or an image file) and none found from /proc/cmdline")

// Run runs the daemon until ctx ends. Each step below opens one part and
// registers how to close it; they are closed in reverse when Run returns.
func Run(ctx context.Context, o Options) error {
	w := &wiring{o: o, log: o.Log}
	if w.log == nil {
		w.log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	defer w.close()
	if err := w.loadConfig(); err != nil {
		return err
	}
	if err := w.openDisk(ctx); err != nil {
		return err
	}
	w.openIOLimit(ctx)
	w.checkKeys()
	if err := w.openFloor(ctx); err != nil {
		return err
	}
	if err := w.startMetrics(ctx); err != nil {
		return err
	}
	eng, err := engine.New(w.engineConfig())
	if err != nil {
		return err
	}
	w.eng = eng
	return w.serve(ctx)
}

// connectBus connects to the bus at addr ("" = the system bus) for the
// life of ctx and returns the address used.
func connectBus(ctx context.Context, addr string) (*dbus.Conn, string, error) {
	if addr == "" {
		addr = update1.SystemBusAddress()
	}
	conn, err := dbus.Connect(addr, dbus.WithContext(ctx))
	if err != nil {
		return nil, addr, fmt.Errorf("daemon: connect to D-Bus at %s: %w", addr, err)
	}
	return conn, addr, nil
}

// endOnBusLoss cancels run with ErrBusLost when the bus connection ends
// while ctx is live: losing the bus ends the daemon (systemd restarts
// it), since without it nobody can see or steer the engine. The
// connection also ends when ctx does (it was dialed with ctx).
func endOnBusLoss(ctx, run context.Context, conn *dbus.Conn, cancel context.CancelCauseFunc) {
	select {
	case <-conn.Context().Done():
		if ctx.Err() == nil {
			cancel(ErrBusLost)
		}
	case <-run.Done():
	}
}

// ErrBusLost is returned when the D-Bus connection closes under the daemon.
var ErrBusLost = errors.New("daemon: lost the D-Bus connection")

// keyFile is the payload public key file, read at every apply.
type keyFile struct {
	path     string
	insecure bool // --insecure-allow-unsigned-payloads
	log      *slog.Logger
}

// load reads the keys. A missing file is an error (wrapping
// os.ErrNotExist), or, when insecure, no key and a warning.
func (k keyFile) load() ([]*payloadKey, error) {
	keys, err := loadKeys(k.path)
	if errors.Is(err, os.ErrNotExist) && k.insecure {
		k.log.Warn("INSECURE: no payload public key; this payload's signature is NOT checked (--insecure-allow-unsigned-payloads)", "path", k.path)
		return nil, nil
	}
	return keys, err
}

func loadKeys(path string) ([]*payloadKey, error) {
	if path == "" {
		return nil, fmt.Errorf("daemon: payload key: no key file configured (UPDATE_ENGINE_PUBKEY is empty): %w", os.ErrNotExist)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("daemon: payload key: %w", err)
	}
	keys, err := payload.ParsePublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("daemon: payload key %s: %w", path, err)
	}
	return keys, nil
}

// healthCommand joins the health units and command into one sh -c.
func healthCommand(cfg *config.Config) []string {
	var parts []string
	if len(cfg.HealthUnits) > 0 {
		parts = append(parts, "systemctl is-active --quiet "+strings.Join(cfg.HealthUnits, " "))
	}
	if cfg.HealthCommand != "" {
		parts = append(parts, "("+cfg.HealthCommand+")")
	}
	if len(parts) == 0 {
		return nil
	}
	return []string{"/bin/sh", "-c", strings.Join(parts, " && ")}
}

// unameArch is uname -m for the Omaha os sp attribute.
func unameArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

// reportThrottle adds the limiter's busy write time to the throttled
// metric (an upper bound of the time spent throttled) every second.
func reportThrottle(ctx context.Context, l *cgroup.Limiter, m *metrics.Metrics) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			busy := l.Stats().Busy
			if busy > last {
				m.AddThrottled(busy - last)
				last = busy
			}
		}
	}
}
