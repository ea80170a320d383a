package daemon

import (
	"cmp"
	"context"
	"log/slog"
	"time"

	"github.com/abupdate/update_engine/internal/config"
	"github.com/abupdate/update_engine/internal/metrics"
	"github.com/abupdate/update_engine/pkg/cgroup"
)

// openIOLimit sets up the passive slot's write limit the configuration
// asks for: none (nil, nil), a fixed rate (UPDATE_ENGINE_IO_WRITE_BPS or
// UPDATE_ENGINE_IO_LIMIT=<rate>), or adaptive (UPDATE_ENGINE_IO_LIMIT=
// adaptive: the Limiter starts at the ceiling and the returned controller
// moves it). Every write to the slot (full, delta, resumed) goes through
// the one Limiter. Without PSI the adaptive limit falls back to the fixed
// rate (the floor when none is set), saying why in one log line. A
// Limiter that cannot be made leaves the writes unthrottled, as before.
// procRoot and cgroupRoot are /proc and /sys/fs/cgroup but in tests.
func openIOLimit(ctx context.Context, cfg *config.Config, device string, log *slog.Logger, procRoot, cgroupRoot string) (*cgroup.Limiter, *cgroup.Adaptive) {
	if !cfg.IOAdaptive {
		if cfg.IOWriteBPS == 0 {
			return nil, nil
		}
		l, err := cgroup.New(ctx, cgroup.Config{Device: device, WriteBPS: cfg.IOWriteBPS})
		if err != nil {
			log.Warn("I/O limit not applied; writing unthrottled", "bps", cfg.IOWriteBPS, "err", err)
			return nil, nil
		}
		log.Info("I/O limit", "bps", cfg.IOWriteBPS, "device", l.Device())
		return l, nil
	}
	l, err := cgroup.New(ctx, cgroup.Config{Device: device, WriteBPS: cfg.IOLimitCeiling})
	if err != nil {
		log.Warn("adaptive I/O limit not applied; writing unthrottled", "err", err)
		return nil, nil
	}
	// After New: on cgroup v2 the process now sits in the limit's group,
	// which the pressure source must leave out.
	psi, err := cgroup.NewPSI(procRoot, cgroupRoot)
	var a *cgroup.Adaptive
	if err == nil {
		a, err = cgroup.NewAdaptive(cgroup.AdaptiveConfig{
			Floor: cfg.IOLimitFloor, Ceiling: cfg.IOLimitCeiling, Target: cfg.IOLimitTarget / 100,
		}, psi, l, time.Now)
	}
	if err != nil {
		fixed := cmp.Or(cfg.IOWriteBPS, cfg.IOLimitFloor)
		if serr := l.SetWriteBPS(fixed); serr != nil {
			log.Warn("I/O limit not applied; writing unthrottled", "bps", fixed, "err", serr)
			l.Close()
			return nil, nil
		}
		log.Warn("adaptive I/O limit unavailable; using the fixed limit", "bps", fixed, "device", l.Device(), "why", err)
		return l, nil
	}
	log.Info("I/O limit adaptive", "floor", cfg.IOLimitFloor, "ceiling", cfg.IOLimitCeiling,
		"target_some_percent", cfg.IOLimitTarget, "device", l.Device(), "psi", psi.Root, "self", psi.Self)
	return l, a
}

// runAdaptive steps the adaptive limit every interval until ctx ends and
// publishes it. A pressure file that cannot be read keeps the limit where
// it is; that is logged when it starts and when it ends.
func runAdaptive(ctx context.Context, a *cgroup.Adaptive, m *metrics.Metrics, log *slog.Logger) {
	t := time.NewTicker(a.Config().Interval)
	defer t.Stop()
	failing := false
	last := a.Rate()
	_, _ = a.Step() // the first sample, so the first tick can decide
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r, err := a.Step()
		switch {
		case err != nil && !failing:
			log.Warn("adaptive I/O limit: cannot measure the pressure; the limit stays", "bps", r, "err", err)
		case err == nil && failing:
			log.Info("adaptive I/O limit: measuring the pressure again")
		}
		failing = err != nil
		if r != last {
			log.Debug("I/O limit", "bps", r, "pressure", a.Pressure())
			last = r
		}
		m.SetIOLimit(r, a.Pressure())
	}
}
