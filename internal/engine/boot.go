package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/abupdate/update_engine/internal/status"
)

// HealthGate decides when the booted slot is marked good after a boot
// (Flatcar runs flatcar-setgoodroot 45 s after start): wait Delay, then
// run Command (if any) which must exit 0 within Timeout; then mark the
// booted slot good, raise the anti-rollback floor to the running version
// and record the time from the flip.
type HealthGate struct {
	Disabled bool
	Delay    time.Duration // 45s by default (set by the daemon)
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
			if st.snap.LastError == status.Success {
				st.snap.LastError = status.Error
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
	if report != nil && !report.Rollback && report.FlipTime > 0 && e.cfg.Metrics != nil {
		e.cfg.Metrics.ObserveFlipToGood(e.cfg.Clock.Now().Sub(time.Unix(report.FlipTime, 0)))
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

// ExecPostinst runs a post-install program as flatcar-postinst is run:
// `Path <target-device> [KERNEL=<path>] [PCR_POLICY=<path>]` (the files
// the payload installed, Plan.PostinstArgs), with the proxy environment
// passed on and a
// timeout. Exit status 3 maps to code 19 (which the engine treats as
// success); any other failure to code 5.
type ExecPostinst struct {
	Path    string
	Timeout time.Duration // 0 = 10 min
}

// Run implements Postinstaller. A missing program fails with code 5, as
// any other post-install failure.
func (p ExecPostinst) Run(ctx context.Context, device string, plan *Plan) error {
	if _, err := os.Stat(p.Path); err != nil {
		return status.WithCode(status.PostinstallRunnerError, fmt.Errorf("postinst: %w", err))
	}
	timeout := p.Timeout
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := []string{device}
	if plan != nil {
		args = append(args, plan.PostinstArgs...)
	}
	cmd := exec.CommandContext(cctx, p.Path, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, k := range []string{"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "all_proxy", "ALL_PROXY"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	if plan != nil {
		cmd.Env = append(cmd.Env, "NEW_VERSION="+plan.Version)
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.ExitCode() == 3:
		return status.WithCode(status.PostinstallBootedFromFirmwareB, fmt.Errorf("postinst %s exited 3: %s", p.Path, out))
	default:
		return status.WithCode(status.PostinstallRunnerError, fmt.Errorf("postinst %s: %v: %s", p.Path, err, out))
	}
}

// Cleanup implements Postinstaller: an ExecPostinst mounts nothing.
func (ExecPostinst) Cleanup(string) error { return nil }
