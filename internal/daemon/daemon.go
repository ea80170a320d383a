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
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/abupdate/update_engine/internal/antirollback"
	"github.com/abupdate/update_engine/internal/config"
	"github.com/abupdate/update_engine/internal/dbusapi"
	"github.com/abupdate/update_engine/internal/engine"
	"github.com/abupdate/update_engine/internal/metrics"
	"github.com/abupdate/update_engine/internal/prefs"
	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/pkg/cgroup"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/payload"
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

// Run runs the daemon until ctx ends.
func Run(ctx context.Context, o Options) error {
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	loadConfig := func() (*config.Config, error) {
		return config.Load(config.Options{Root: o.ConfigRoot, Overrides: o.Overrides})
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		log.Warn("update.conf: ignored", "warning", w.Error())
	}
	if cfg.UpdatesDisabled() {
		log.Info("updates are disabled (SERVER=disabled): no update checks until SERVER is set again")
	}
	if cfg.ReleaseVersion == "" {
		return fmt.Errorf("daemon: the running version is unknown: set FLATCAR_RELEASE_VERSION in the release file or pass --release-version")
	}
	if o.Disk == "" {
		// No --disk: the disk holding the partition the kernel booted.
		cmdline, err := os.ReadFile("/proc/cmdline")
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNoDisk, err)
		}
		if o.Disk, err = slot.FindDisk(string(cmdline)); err != nil {
			return fmt.Errorf("%w: %v", ErrNoDisk, err)
		}
		log.Info("disk found from the kernel command line", "disk", o.Disk)
	}
	prefsDir := o.PrefsDir
	if prefsDir == "" {
		prefsDir = cfg.PrefsDir
	}
	store, err := prefs.Open(prefsDir)
	if err != nil {
		return err
	}
	if _, err := store.GetString(prefs.KeyAlephVersion); errors.Is(err, prefs.ErrNotFound) {
		_ = store.SetString(prefs.KeyAlephVersion, cfg.ReleaseVersion)
	}
	aleph, _ := store.GetString(prefs.KeyAlephVersion)

	disk, err := slot.Open(ctx, o.Disk, slot.Options{Booted: o.Booted, Direct: cfg.IOWriteBPS > 0 || cfg.IOAdaptive})
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if _, err := disk.Repair(ctx); err != nil {
		log.Warn("GPT repair failed", "disk", o.Disk, "err", err)
	}
	log.Info("slots", "disk", disk.String(), "booted", disk.Booted(), "passive", disk.Passive())

	limiter, adaptive, limitErr := openIOLimit(ctx, cfg, disk.PassiveDevice(), log, "/proc", "/sys/fs/cgroup")
	if limiter != nil {
		defer closeIOLimit(limiter, log)
	}

	// The key is read again at every apply, so one installed later is used.
	keys := keyFile{path: cfg.PubKey, insecure: o.InsecureAllowUnsignedPayloads, log: log}
	if o.InsecureAllowUnsignedPayloads {
		log.Warn("INSECURE: --insecure-allow-unsigned-payloads: without a payload public key, payloads are installed unverified", "path", cfg.PubKey)
	}
	if ks, err := keys.load(); err != nil {
		log.Error("no usable payload public key: every payload is refused until one is installed", "path", cfg.PubKey, "err", err)
	} else if len(ks) > 0 {
		log.Info("payload public key", "path", cfg.PubKey, "keys", len(ks))
	}

	var floor engine.Floor
	requireVersion := false
	if o.TPM != "" {
		tc := antirollback.Config{Require: o.RequireTPM, Logf: func(f string, a ...any) { log.Info(fmt.Sprintf(f, a...)) }}
		if strings.Contains(o.TPM, ":") && !strings.HasPrefix(o.TPM, "/") {
			tc.Addr = o.TPM
		} else {
			tc.Device = o.TPM
		}
		g, err := antirollback.Open(ctx, tc)
		if err != nil {
			return err
		}
		defer g.Close()
		floor = engine.GuardFloor{Guard: g, PCR: o.MeasurePCR}
		// The floor judges the offered version: the payload must prove it.
		requireVersion = g.Enabled()
	}

	m := metrics.New()
	m.SetInfo(cfg.ReleaseVersion, disk.Booted())
	if cfg.MetricsListen != "" {
		l, err := metrics.Listen(cfg.MetricsListen, cfg.MetricsAllowRemote)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(l) }()
		defer srv.Close()
		log.Info("metrics", "listen", l.Addr().String())
	}
	if cfg.MetricsSocket != "" {
		l, err := metrics.ListenUnix(cfg.MetricsSocket)
		if err != nil {
			return err
		}
		sctx, stopSocket := context.WithCancel(ctx)
		served := make(chan struct{})
		go func() { defer close(served); _ = m.Serve(sctx, l) }()
		defer func() { stopSocket(); <-served }() // Serve removes the socket
		log.Info("metrics", "socket", cfg.MetricsSocket)
	}

	client := &omaha.Client{Server: cfg.Server, DownloadUser: cfg.DownloadUser, DownloadPassword: cfg.DownloadPassword}
	params := omaha.Params{
		AppID: cfg.AppID, Version: cfg.ReleaseVersion, BootID: cfg.BootID, MachineID: cfg.MachineID,
		OEM: cfg.OEMID, OEMVersion: cfg.OEMVersion, AlephVersion: aleph, MachineAlias: cfg.MachineAlias,
		Board: cfg.Board, Arch: unameArch(),
	}
	// For events sent before any check (the 3/1 owed across a restart):
	// delta_okay as the engine's checks say it, no delta failed for good.
	failedDeltas, err := store.GetInt64(engine.KeyDeltaFailures)
	params.DeltaOK = err != nil || failedDeltas == 0
	runDir := o.RunDir
	if runDir == "" {
		runDir = "/var/run"
	}
	rebootFile := o.RebootRequiredFile
	switch rebootFile {
	case "":
		rebootFile = "/run/reboot-required"
	case "-":
		rebootFile = ""
	}
	m.SetIOLimitError(limitErr != nil)
	if limiter != nil {
		m.SetIOLimit(limiter.WriteBPS(), 0)
		go reportThrottle(ctx, limiter, m)
	}
	if adaptive != nil {
		go runAdaptive(ctx, adaptive, m, log)
	}
	note := &notifier{}
	applier := engine.PayloadApplier{Keys: keys.load, InsecureAllowUnsigned: o.InsecureAllowUnsignedPayloads,
		RequireVersion: requireVersion, CheckpointBytes: cmp.Or(o.CheckpointBytes, 4<<20), DecodeNice: 10,
		OpDuration: m.ObserveOperation}
	procedures := engine.Procedures{
		BootDir: o.BootDir, PolicyDir: cmp.Or(o.PCRPolicyDir, filepath.Dir(filepath.Clean(prefsDir))),
		// PCR_POLICY_SERVER is read again before each POST, as update.conf
		// before each check.
		PolicyServer: func() string {
			if c, err := config.Load(config.Options{Root: o.ConfigRoot, Overrides: o.Overrides}); err == nil {
				return c.PCRPolicyServer
			}
			return cfg.PCRPolicyServer
		},
	}
	var eng *engine.Engine
	// Events owed from before a restart go out before any check: with the
	// engine's track (a SetChannel choice beats GROUP).
	trackNow := func() string { return eng.Snapshot().Channel }
	ecfg := engine.Config{
		Checker:    &engine.OmahaChecker{Client: client, Params: params, Track: trackNow, Prefs: store, Log: log},
		Downloader: &engine.OmahaDownloader{Client: client},
		Applier:    applier,
		Slots:      engine.DiskSlots{Disk: disk, Limiter: limiter},
		Prefs:      store,
		Floor:      floor,
		Procedures: procedures,
		Metrics:    metricsAdapter{m},
		Notifier:   note,
		Log:        log,

		CurrentVersion: cfg.ReleaseVersion,
		BootID:         cmp.Or(o.BootID, cfg.BootID),
		Track:          cfg.Group,
		Server:         cfg.Server,
		Settings: func() (engine.Settings, error) {
			c, err := loadConfig()
			if err != nil {
				return engine.Settings{}, err
			}
			return engine.Settings{Track: c.Group, Server: c.Server}, nil
		},
		AllowOmahaURL:      o.AllowOmahaURL,
		MarkerPath:         filepath.Join(runDir, MarkerName),
		RebootRequiredPath: rebootFile,
		Schedule: engine.Schedule{
			Disabled: !o.AutoCheck, Initial: o.InitialDelay, Interval: o.CheckInterval,
		},
		Health: engine.HealthGate{
			Disabled: o.NoHealthGate, Delay: cfg.HealthDelay, Command: healthCommand(cfg), Timeout: cfg.HealthTimeout,
		},
	}
	switch o.Postinst {
	case "":
		ecfg.Postinst = engine.SlotPostinst{Timeout: o.PostinstTimeout, Log: log}
	case "-":
		ecfg.Postinst = engine.NoPostinst{}
	default:
		ecfg.Postinst = engine.ExecPostinst{Path: o.Postinst, Timeout: o.PostinstTimeout}
	}
	eng, err = engine.New(ecfg)
	if err != nil {
		return err
	}

	conn, bus, err := connectBus(ctx, o.Bus)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The engine restores its state before the names are taken, so the
	// first GetStatus (locksmith's, systemd's Type=dbus) is already right.
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	runErr := make(chan error, 1)
	go func() { runErr <- eng.Run(rctx) }()
	select {
	case <-eng.Ready():
	case err := <-runErr:
		return err
	}
	srv, err := dbusapi.Export(ctx, conn, busEngine{e: eng, allowOmahaURL: o.AllowOmahaURL, lim: limiter, adaptive: adaptive != nil, limErr: limitErr}, dbusapi.Options{})
	if err != nil {
		cancel(nil)
		<-runErr
		if ctx.Err() != nil {
			return nil // stopped while taking the bus names
		}
		return err
	}
	defer srv.Close()
	note.srv.Store(srv)
	note.StatusChanged(eng.Snapshot()) // Flatcar signals once at startup
	log.Info("update_engine ready", "bus", bus, "version", cfg.ReleaseVersion, "server", cfg.Server, "group", cfg.Group)

	// Losing the bus ends the daemon (systemd restarts it): without it
	// nobody can see or steer the engine.
	go func() {
		select {
		case <-conn.Context().Done():
			// The connection also ends when ctx does (it was dialed
			// with ctx): only a live ctx means the bus went away.
			if ctx.Err() == nil {
				cancel(ErrBusLost)
			}
		case <-rctx.Done():
		}
	}()
	err = <-runErr
	if cause := context.Cause(rctx); errors.Is(cause, ErrBusLost) {
		return fmt.Errorf("%w (%s)", ErrBusLost, bus)
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		log.Info("update_engine stopping")
		return nil
	}
	return err
}

// connectBus connects to the bus at addr ("" = the system bus) for the
// life of ctx and returns the address used.
func connectBus(ctx context.Context, addr string) (*dbus.Conn, string, error) {
	if addr == "" {
		addr = dbusapi.SystemBusAddress()
	}
	conn, err := dbus.Connect(addr, dbus.WithContext(ctx))
	if err != nil {
		return nil, addr, fmt.Errorf("daemon: connect to D-Bus at %s: %w", addr, err)
	}
	return conn, addr, nil
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

// notifier forwards engine snapshots to the D-Bus server once exported.
type notifier struct {
	srv atomic.Pointer[dbusapi.Server]
}

func (n *notifier) StatusChanged(s engine.Snapshot) {
	if srv := n.srv.Load(); srv != nil {
		_ = srv.Emit(toStatus(s))
	}
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
