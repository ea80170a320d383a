package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/abupdate/update_engine/internal/antirollback"
	"github.com/abupdate/update_engine/internal/config"
	"github.com/abupdate/update_engine/internal/dbusapi"
	"github.com/abupdate/update_engine/internal/engine"
	"github.com/abupdate/update_engine/internal/metrics"
	"github.com/abupdate/update_engine/internal/parts"
	"github.com/abupdate/update_engine/internal/prefs"
	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/pkg/cgroup"
	"github.com/abupdate/update_engine/pkg/omaha"
)

// wiring is one Run: the parts it opened, in the order Run opens them,
// and how to close them again.
type wiring struct {
	o   Options
	log *slog.Logger
	cfg *config.Config

	store    *prefs.Store
	prefsDir string
	disk     *slot.Disk
	limiter  *cgroup.Limiter // nil = writes unthrottled
	adaptive *cgroup.Adaptive
	limitErr error // a configured limit that could not be applied
	keys     keyFile
	floor    *parts.GuardFloor // nil = no anti-rollback floor
	m        *metrics.Metrics
	obs      *observer
	eng      *engine.Engine

	closers []func() // run in reverse by close
}

// onClose registers f to run when Run returns, before what was
// registered earlier.
func (w *wiring) onClose(f func()) { w.closers = append(w.closers, f) }

func (w *wiring) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
}

// goroutine runs f until ctx ends or Run returns; Run waits for it.
func (w *wiring) goroutine(ctx context.Context, f func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); f(ctx) }()
	w.onClose(func() { cancel(); wg.Wait() })
}

// readConfig reads update.conf and the release file again (the engine
// does before every check).
func (w *wiring) readConfig() (*config.Config, error) {
	return config.Load(config.Options{Root: w.o.ConfigRoot, Overrides: w.o.Overrides})
}

// loadConfig reads the configuration once at start; the running version
// must be known.
func (w *wiring) loadConfig() error {
	cfg, err := w.readConfig()
	if err != nil {
		return err
	}
	for _, warn := range cfg.Warnings {
		w.log.Warn("update.conf: ignored", "warning", warn.Error())
	}
	if cfg.UpdatesDisabled() {
		w.log.Info("updates are disabled (SERVER=disabled): no update checks until SERVER is set again")
	}
	if cfg.ReleaseVersion == "" {
		return fmt.Errorf("daemon: the running version is unknown: set FLATCAR_RELEASE_VERSION in the release file or pass --release-version")
	}
	w.cfg = cfg
	return nil
}

// openDisk opens the prefs and the A/B slots: of Options.Disk, or of the
// disk holding the partition the kernel booted.
func (w *wiring) openDisk(ctx context.Context) error {
	if w.o.Disk == "" {
		cmdline, err := os.ReadFile("/proc/cmdline")
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNoDisk, err)
		}
		if w.o.Disk, err = slot.FindDisk(string(cmdline)); err != nil {
			return fmt.Errorf("%w: %v", ErrNoDisk, err)
		}
		w.log.Info("disk found from the kernel command line", "disk", w.o.Disk)
	}
	w.prefsDir = cmp.Or(w.o.PrefsDir, w.cfg.PrefsDir)
	store, err := prefs.Open(w.prefsDir)
	if err != nil {
		return err
	}
	w.store = store
	if _, err := store.GetString(prefs.KeyAlephVersion); errors.Is(err, prefs.ErrNotFound) {
		_ = store.SetString(prefs.KeyAlephVersion, w.cfg.ReleaseVersion)
	}
	disk, err := slot.Open(ctx, w.o.Disk, slot.Options{Booted: w.o.Booted, Direct: w.cfg.IOWriteBPS > 0 || w.cfg.IOAdaptive})
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if _, err := disk.Repair(ctx); err != nil {
		w.log.Warn("GPT repair failed", "disk", w.o.Disk, "err", err)
	}
	w.log.Info("slots", "disk", disk.String(), "booted", disk.Booted(), "passive", disk.Passive())
	w.disk = disk
	return nil
}

// openIOLimit sets up the passive slot's write limit (openIOLimit); one
// that cannot be applied is kept as limitErr for the detailed status.
// The limit is the whole disk's (a partition maps to its disk), so it is
// named by the disk, which stays put: udev re-reads the partition table
// when a writer of the whole disk closes it (on a disk with no partition
// in use, such as a second disk or a loop device), and the passive
// partition's node is missing for that moment.
func (w *wiring) openIOLimit(ctx context.Context) {
	w.limiter, w.adaptive, w.limitErr = openIOLimit(ctx, w.cfg, w.disk.Path(), w.log, "/proc", "/sys/fs/cgroup")
	if w.limiter != nil {
		w.onClose(func() { closeIOLimit(w.limiter, w.log) })
	}
}

// checkKeys says at start whether payloads can be verified; the key is
// read again at every apply, so one installed later is used.
func (w *wiring) checkKeys() {
	w.keys = keyFile{path: w.cfg.PubKey, insecure: w.o.InsecureAllowUnsignedPayloads, log: w.log}
	if w.o.InsecureAllowUnsignedPayloads {
		w.log.Warn("INSECURE: --insecure-allow-unsigned-payloads: without a payload public key, payloads are installed unverified", "path", w.cfg.PubKey)
	}
	if ks, err := w.keys.load(); err != nil {
		w.log.Error("no usable payload public key: every payload is refused until one is installed", "path", w.cfg.PubKey, "err", err)
	} else if len(ks) > 0 {
		w.log.Info("payload public key", "path", w.cfg.PubKey, "keys", len(ks))
	}
}

// openFloor opens the TPM's anti-rollback floor when Options.TPM names
// one: a device path, or host:port of a swtpm.
func (w *wiring) openFloor(ctx context.Context) error {
	if w.o.TPM == "" {
		return nil
	}
	log := w.log
	tc := antirollback.Config{Require: w.o.RequireTPM, Logf: func(f string, a ...any) { log.Info(fmt.Sprintf(f, a...)) }}
	if strings.Contains(w.o.TPM, ":") && !strings.HasPrefix(w.o.TPM, "/") {
		tc.Addr = w.o.TPM
	} else {
		tc.Device = w.o.TPM
	}
	g, err := antirollback.Open(ctx, tc)
	if err != nil {
		return err
	}
	w.onClose(func() { g.Close() })
	w.floor = &parts.GuardFloor{Guard: g, PCR: w.o.MeasurePCR}
	return nil
}

// startMetrics makes the metrics, serves them where the configuration
// says (a loopback TCP address, a Unix socket), and starts what keeps the
// I/O limit's series current. Each server is shut down and waited for
// when Run returns; one that fails is logged.
func (w *wiring) startMetrics(ctx context.Context) error {
	w.m = metrics.New()
	w.m.SetInfo(w.cfg.ReleaseVersion, w.disk.Booted())
	w.obs = &observer{m: w.m}
	if w.cfg.MetricsListen != "" {
		l, err := metrics.Listen(w.cfg.MetricsListen, w.cfg.MetricsAllowRemote)
		if err != nil {
			return err
		}
		w.serveMetrics(ctx, l, "listen", l.Addr().String())
	}
	if w.cfg.MetricsSocket != "" {
		l, err := metrics.ListenUnix(w.cfg.MetricsSocket)
		if err != nil {
			return err
		}
		w.serveMetrics(ctx, l, "socket", w.cfg.MetricsSocket) // Serve removes the socket
	}
	w.m.SetIOLimitError(w.limitErr != nil)
	if w.limiter != nil {
		w.m.SetIOLimit(w.limiter.WriteBPS(), 0)
		w.goroutine(ctx, func(ctx context.Context) { reportThrottle(ctx, w.limiter, w.m) })
	}
	if w.adaptive != nil {
		w.goroutine(ctx, func(ctx context.Context) { runAdaptive(ctx, w.adaptive, w.m, w.log) })
	}
	return nil
}

func (w *wiring) serveMetrics(ctx context.Context, l net.Listener, kind, where string) {
	w.goroutine(ctx, func(ctx context.Context) {
		if err := w.m.Serve(ctx, l); err != nil {
			w.log.Error("metrics server failed; metrics are no longer served", kind, where, "err", err)
		}
	})
	w.log.Info("metrics", kind, where)
}

// engineConfig wires the parts into the engine's configuration.
func (w *wiring) engineConfig() engine.Config {
	o, cfg := w.o, w.cfg
	ecfg := engine.Config{
		Applier:    w.applier(),
		Slots:      parts.DiskSlots{Disk: w.disk, Limiter: w.limiter},
		Prefs:      w.store,
		Procedures: w.procedures(),
		Observer:   w.obs,
		Postinst:   w.postinst(),
		Log:        w.log,

		CurrentVersion: cfg.ReleaseVersion,
		BootID:         cmp.Or(o.BootID, cfg.BootID),
		Track:          cfg.Group,
		Server:         cfg.Server,
		Settings: func() (engine.Settings, error) {
			c, err := w.readConfig()
			if err != nil {
				return engine.Settings{}, err
			}
			return engine.Settings{Track: c.Group, Server: c.Server}, nil
		},
		AllowOmahaURL:      o.AllowOmahaURL,
		MarkerPath:         filepath.Join(cmp.Or(o.RunDir, "/var/run"), MarkerName),
		RebootRequiredPath: w.rebootRequiredPath(),
		Schedule: engine.Schedule{
			Disabled: !o.AutoCheck, Initial: o.InitialDelay, Interval: o.CheckInterval,
		},
		Health: engine.HealthGate{
			Disabled: o.NoHealthGate, Delay: cfg.HealthDelay, Command: healthCommand(cfg), Timeout: cfg.HealthTimeout,
		},
	}
	ecfg.Checker, ecfg.Downloader = w.omaha()
	if w.floor != nil {
		ecfg.Floor, ecfg.Measurer = w.floor, w.floor
	}
	return ecfg
}

// omaha is the Omaha client as the engine's Checker and Downloader.
func (w *wiring) omaha() (*parts.OmahaChecker, *parts.OmahaDownloader) {
	cfg := w.cfg
	client := &omaha.Client{Server: cfg.Server, DownloadUser: cfg.DownloadUser, DownloadPassword: cfg.DownloadPassword}
	aleph, _ := w.store.GetString(prefs.KeyAlephVersion)
	params := omaha.Params{
		AppID: cfg.AppID, Version: cfg.ReleaseVersion, BootID: cfg.BootID, MachineID: cfg.MachineID,
		OEM: cfg.OEMID, OEMVersion: cfg.OEMVersion, AlephVersion: aleph, MachineAlias: cfg.MachineAlias,
		Board: cfg.Board, Arch: unameArch(),
	}
	// For events sent before any check (the 3/1 owed across a restart):
	// delta_okay as the engine's checks say it, no delta failed for good.
	failedDeltas, err := w.store.GetInt64(engine.KeyDeltaFailures)
	params.DeltaOK = err != nil || failedDeltas == 0
	// Those events also take the engine's track (a SetChannel choice
	// beats GROUP).
	trackNow := func() string { return w.eng.Snapshot().Channel }
	checker := &parts.OmahaChecker{Client: client, Params: params, Track: trackNow, Prefs: w.store, Log: w.log}
	return checker, &parts.OmahaDownloader{Client: client}
}

// applier verifies and applies payloads onto the passive slot.
func (w *wiring) applier() parts.PayloadApplier {
	return parts.PayloadApplier{Keys: w.keys.load, InsecureAllowUnsigned: w.o.InsecureAllowUnsignedPayloads,
		// The floor judges the offered version: the payload must prove it.
		RequireVersion:  w.floor != nil && w.floor.Guard.Enabled(),
		CheckpointBytes: cmp.Or(w.o.CheckpointBytes, 4<<20), DecodeNice: 10,
		TargetSize: w.disk.BootedSlot().Size, OpDuration: w.m.ObserveOperation}
}

// procedures places a Flatcar payload's kernel and PCR policy.
func (w *wiring) procedures() engine.Procedures {
	return engine.Procedures{
		BootDir: w.o.BootDir, PolicyDir: cmp.Or(w.o.PCRPolicyDir, filepath.Dir(filepath.Clean(w.prefsDir))),
		// PCR_POLICY_SERVER is read again before each POST, as update.conf
		// before each check.
		PolicyServer: func() string {
			if c, err := w.readConfig(); err == nil {
				return c.PCRPolicyServer
			}
			return w.cfg.PCRPolicyServer
		},
	}
}

// postinst is Options.Postinst's post-install step.
func (w *wiring) postinst() engine.Postinstaller {
	switch w.o.Postinst {
	case "":
		return parts.SlotPostinst{Timeout: w.o.PostinstTimeout, Log: w.log}
	case "-":
		return parts.NoPostinst{}
	}
	return parts.ExecPostinst{Path: w.o.Postinst, Timeout: w.o.PostinstTimeout}
}

func (w *wiring) rebootRequiredPath() string {
	switch w.o.RebootRequiredFile {
	case "":
		return "/run/reboot-required"
	case "-":
		return ""
	}
	return w.o.RebootRequiredFile
}

// serve runs the engine and exports it on D-Bus until ctx ends or the bus
// goes away. The engine restores its state before the names are taken, so
// the first GetStatus (locksmith's, systemd's Type=dbus) is already right.
func (w *wiring) serve(ctx context.Context) error {
	conn, bus, err := connectBus(ctx, w.o.Bus)
	if err != nil {
		return err
	}
	defer conn.Close()
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	runErr := make(chan error, 1)
	go func() { runErr <- w.eng.Run(rctx) }()
	select {
	case <-w.eng.Ready():
	case err := <-runErr:
		return err
	}
	srv, err := dbusapi.Export(ctx, conn, w.busEngine(), dbusapi.Options{})
	if err != nil {
		cancel(nil)
		<-runErr
		if ctx.Err() != nil {
			return nil // stopped while taking the bus names
		}
		return err
	}
	defer srv.Close()
	w.obs.export(srv, w.eng.Snapshot()) // Flatcar signals once at startup
	w.log.Info("update_engine ready", "bus", bus, "version", w.cfg.ReleaseVersion, "server", w.cfg.Server, "group", w.cfg.Group)
	go endOnBusLoss(ctx, rctx, conn, cancel)
	err = <-runErr
	if cause := context.Cause(rctx); errors.Is(cause, ErrBusLost) {
		return fmt.Errorf("%w (%s)", ErrBusLost, bus)
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		w.log.Info("update_engine stopping")
		return nil
	}
	return err
}

func (w *wiring) busEngine() busEngine {
	return busEngine{Engine: w.eng, allowOmahaURL: w.o.AllowOmahaURL, lim: w.limiter, adaptive: w.adaptive != nil, limErr: w.limitErr}
}
