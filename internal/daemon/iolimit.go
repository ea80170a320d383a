package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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
// Limiter that cannot be made leaves the writes unthrottled; that is an
// error the user sees: logged at error level with what to do, and returned
// as unapplied for the detailed status (io_limit_error) and the metrics.
// procRoot and cgroupRoot are /proc and /sys/fs/cgroup but in tests.
func openIOLimit(ctx context.Context, cfg *config.Config, device string, log *slog.Logger, procRoot, cgroupRoot string) (l *cgroup.Limiter, a *cgroup.Adaptive, unapplied error) {
	if !cfg.IOAdaptive {
		if cfg.IOWriteBPS == 0 {
			return nil, nil, nil
		}
		l, err := cgroup.New(ctx, cgroup.Config{Device: device, WriteBPS: cfg.IOWriteBPS})
		if err != nil {
			return nil, nil, limitFailed(log, fmt.Sprintf("the I/O write limit of %d bytes/s", cfg.IOWriteBPS), err)
		}
		log.Info("I/O limit", "bps", cfg.IOWriteBPS, "device", l.Device(), "cgroup", l.Dir())
		return l, nil, nil
	}
	l, err := cgroup.New(ctx, cgroup.Config{Device: device, WriteBPS: cfg.IOLimitCeiling})
	if err != nil {
		return nil, nil, limitFailed(log, "the adaptive I/O write limit", err)
	}
	// After New: on cgroup v2 the process now sits in the limit's group,
	// which the pressure source must leave out.
	psi, err := cgroup.NewPSI(procRoot, cgroupRoot)
	if err == nil {
		a, err = cgroup.NewAdaptive(cgroup.AdaptiveConfig{
			Floor: cfg.IOLimitFloor, Ceiling: cfg.IOLimitCeiling, Target: cfg.IOLimitTarget / 100,
		}, psi, l, time.Now)
	}
	if err != nil {
		fixed := cmp.Or(cfg.IOWriteBPS, cfg.IOLimitFloor)
		if serr := l.SetWriteBPS(fixed); serr != nil {
			return nil, nil, limitFailed(log, fmt.Sprintf("the I/O write limit of %d bytes/s", fixed), errors.Join(serr, l.Close()))
		}
		log.Warn("adaptive I/O limit unavailable; using the fixed limit", "bps", fixed, "device", l.Device(), "why", err)
		return l, nil, nil
	}
	log.Info("I/O limit adaptive", "floor", cfg.IOLimitFloor, "ceiling", cfg.IOLimitCeiling,
		"target_some_percent", cfg.IOLimitTarget, "device", l.Device(), "psi", psi.Root, "self", psi.Self)
	return l, a, nil
}

// limitFailed logs, at error level, that what (a configured limit) could
// not be applied and what to do, and returns the error the detailed
// status shows.
func limitFailed(log *slog.Logger, what string, err error) error {
	fix := "check the cgroup setup named in the error"
	switch {
	case errors.Is(err, cgroup.ErrShared):
		fix = "run update_engine as its own systemd service with Delegate=io (dist/update-engine.service), not from a shell, session or job that shares its cgroup"
	case errors.Is(err, cgroup.ErrUnavailable):
		fix = "on cgroup v2 give the service the io controller (Delegate=io, as dist/update-engine.service has); or limit the unit with systemd's IOWriteBandwidthMax= and drop the engine's limit"
	}
	log.Error("I/O limit NOT applied: writes to the passive slot are unthrottled", "limit", what, "err", err, "fix", fix)
	return fmt.Errorf("%s is not applied, writes are unthrottled: %w (fix: %s)", what, err, fix)
}

// closeIOLimit releases l and logs what its writes achieved: bytes over
// the time from the first write's start to the last one's end.
func closeIOLimit(l *cgroup.Limiter, log *slog.Logger) {
	st := l.Stats()
	args := []any{"bytes", st.Bytes, "writes", st.Writes, "busy", st.Busy.Round(time.Millisecond), "limit_bps", l.WriteBPS()}
	if span := st.Last.Sub(st.First); span > 0 {
		args = append(args, "span", span.Round(time.Millisecond), "rate_bps", int64(float64(st.Bytes)/span.Seconds()))
	}
	if err := l.Close(); err != nil {
		log.Error("I/O limit: releasing the cgroup failed", append(args, "err", err)...)
		return
	}
	log.Info("I/O limit released", args...)
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
