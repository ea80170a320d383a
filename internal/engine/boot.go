package engine

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"github.com/abupdate/update_engine/pkg/omaha"
)

// HealthGate decides when the booted slot is marked good after a boot
// (Flatcar runs flatcar-setgoodroot 45 s after start): wait Delay, then
// run Command (if any) which must exit 0 within Timeout; then mark the
// booted slot good, raise the anti-rollback floor to the running version
// and record the time from the flip.
type HealthGate struct {
	Disabled bool
	Delay    time.Duration // the daemon passes UPDATE_ENGINE_HEALTH_DELAY (1 min unless set); 0 = at once
	Command  []string      // optional health check; argv
	Timeout  time.Duration // for Command; 0 = 5 min
}

// ErrUnhealthy is a failed health command; the slot is not marked good.
var ErrUnhealthy = errors.New("engine: health check failed")

func (e *Engine) bootGate(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-e.cfg.Clock.After(e.cfg.Health.Delay):
	}
	if err := e.markGood(ctx); err != nil {
		e.log.Error("booted slot not marked good", "slot", e.cfg.Slots.Booted(), "err", err)
		e.do(ctx, func(st *state) {
			if st.snap.LastError == omaha.Success {
				st.snap.LastError = omaha.Error
				st.snap.LastErrorMessage = err.Error()
			}
		})
		return
	}
	e.do(ctx, func(st *state) { e.refreshSlots(ctx, &st.snap) })
}

func (e *Engine) markGood(ctx context.Context) error {
	if len(e.cfg.Health.Command) > 0 {
		timeout := e.cfg.Health.Timeout
		if timeout == 0 {
			timeout = 5 * time.Minute
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cmd := exec.CommandContext(cctx, e.cfg.Health.Command[0], e.cfg.Health.Command[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%w: %s: %v: %s", ErrUnhealthy, e.cfg.Health.Command[0], err, out)
		}
	}
	report, err := e.markBooted(ctx)
	if err != nil {
		return err
	}
	if e.cfg.Floor != nil && e.cfg.CurrentVersion != "" {
		if err := e.cfg.Floor.Raise(ctx, e.cfg.CurrentVersion); err != nil {
			e.log.Warn("cannot raise the anti-rollback floor", "version", e.cfg.CurrentVersion, "err", err)
		}
	}
	// Only an update we booted into counts (not a rollback).
	if report != nil && !report.Rollback && report.FlipTime > 0 {
		e.observe(FlipToGood{After: e.cfg.Clock.Now().Sub(time.Unix(report.FlipTime, 0))})
	}
	return nil
}

// markBooted marks the booted slot good and records the boot. A flipped
// update waiting for its reboot keeps its slot first: the booted slot is
// then only marked successful (its fallback), never raised above it.
func (e *Engine) markBooted(ctx context.Context) (*Outcome, error) {
	e.recMu.Lock()
	defer e.recMu.Unlock()
	booted := e.cfg.Slots.Booted()
	u := e.rec.Update
	if u != nil && (u.Phase == PhaseFlipping || u.Phase == PhaseFlipped) && u.Target != booted {
		if err := e.cfg.Slots.MarkBootedSuccessful(ctx); err != nil {
			return nil, fmt.Errorf("mark slot %s successful: %w", booted, err)
		}
		e.log.Info("booted slot marked successful; the updated slot still boots next", "slot", booted, "next", u.Target)
	} else {
		if err := e.cfg.Slots.MarkBootedGood(ctx); err != nil {
			return nil, fmt.Errorf("mark slot %s good: %w", booted, err)
		}
		e.log.Info("booted slot marked good", "slot", booted, "version", e.cfg.CurrentVersion)
	}
	report := e.rec.clone().Report
	if err := e.changeLocked(func(r *Record) { r.GoodBoot = e.cfg.BootID }); err != nil {
		return nil, err
	}
	return report, nil
}
