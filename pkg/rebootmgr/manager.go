package rebootmgr

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/abupdate/update_engine/pkg/clock"
	"github.com/abupdate/update_engine/pkg/update1"
)

// Rebooter reboots the machine (Logind in production).
type Rebooter interface {
	Reboot(ctx context.Context) error
}

// StatusSource is update_engine's status (UpdateEngine in production).
type StatusSource interface {
	GetStatus(ctx context.Context) (update1.Status, error)
	// Watch delivers StatusUpdate signals until ctx is done.
	Watch(ctx context.Context) (<-chan update1.Status, error)
}

// Warner warns logged-in users (Wall in production) and returns how many
// it reached.
type Warner interface {
	Warn(msg string) (int, error)
}

// ErrStatusLost: the StatusUpdate stream ended (bus connection lost);
// the manager exits so that systemd restarts it.
var ErrStatusLost = errors.New("rebootmgr: update_engine status stream closed")

// Manager applies a reboot strategy to update_engine's status. Fields are
// set before Run and not changed after.
type Manager struct {
	Strategy Strategy
	Window   *Window // nil = any time
	Lock     Locker  // required when Strategy.NeedsLock()
	Rebooter Rebooter
	Status   StatusSource
	Clock    clock.Clock
	Backoff  clock.Backoff
	// Warner and WarnDelay: warn users, then wait WarnDelay if anyone was
	// warned (locksmith: 5 min). nil Warner = no warning.
	Warner    Warner
	WarnDelay time.Duration
	// StateFile persists the reboot intent ("" = not persisted).
	StateFile string
	// Coordinator, if set, gets the coordinator.conf STATE updates.
	Coordinator *Coordinator
	// BootID returns the current boot id (nil = BootID).
	BootID func() string
	Logf   func(format string, args ...any)
}

func (m *Manager) logf(format string, args ...any) {
	if m.Logf != nil {
		m.Logf(format, args...)
	}
}

func (m *Manager) setState(s string) {
	if m.Coordinator != nil {
		if err := m.Coordinator.SetState(s); err != nil {
			m.logf("%v", err)
		}
	}
}

func (m *Manager) bootID() string {
	if m.BootID != nil {
		return m.BootID()
	}
	return BootID()
}

func (m *Manager) saveIntent(in Intent) {
	if m.StateFile == "" {
		return
	}
	if err := SaveIntent(m.StateFile, in); err != nil {
		m.logf("%v", err)
	}
}

// retry runs f until it succeeds, backing off on the clock.
func (m *Manager) retry(ctx context.Context, what string, f func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d := m.Backoff.Delay(attempt)
		m.logf("%s: %v; retrying in %v", what, err, d.Round(time.Millisecond))
		if err := clock.Sleep(ctx, m.Clock, d); err != nil {
			return err
		}
	}
}

// Run watches update_engine until ctx is done, then returns nil; it
// returns an error when it cannot start or when the status stream ends
// (ErrStatusLost). With StrategyOff it marks the coordinator disabled and
// returns at once.
//
// On start, if update_engine does not need a reboot, Run releases the lock
// (whether or not this host holds it: unlocking is idempotent) and clears
// the saved intent: the host is back, healthy. A saved PhaseRebooting
// intent from this same boot with NEED_REBOOT still reported (the manager
// restarted after committing) resumes the reboot without waiting for the
// window again.
func (m *Manager) Run(ctx context.Context) error {
	if m.Strategy == StrategyOff {
		m.setState(StateDisabled)
		m.logf("strategy off: not managing reboots")
		return nil
	}
	if m.Strategy.NeedsLock() && m.Lock == nil {
		return fmt.Errorf("%w: strategy %v needs a lock", ErrBadConfig, m.Strategy)
	}
	statuses, err := m.Status.Watch(ctx)
	if err != nil {
		return err
	}
	var st update1.Status
	if err := m.retry(ctx, "GetStatus", func(ctx context.Context) error {
		var err error
		st, err = m.Status.GetStatus(ctx)
		return err
	}); err != nil {
		return nil // ctx done
	}
	intent, err := m.loadIntent()
	if err != nil {
		m.logf("%v; starting without a saved intent", err)
	}
	m.setState(StateRunning)
	r := &runState{m: m, ctx: ctx, intent: intent}
	if st.NeedsReboot() {
		r.startPlan(st)
	} else {
		r.settle(st)
	}
	return r.loop(statuses)
}

// runState is Run's planning state, owned by Run's goroutine: the plan in
// flight (planDone, cancelPlan; nil when none) and the intent.
type runState struct {
	m          *Manager
	ctx        context.Context
	intent     Intent
	planDone   chan error
	cancelPlan context.CancelFunc
	rebooted   bool // a reboot was requested: ignore further statuses
}

// loop follows statuses and the plan until ctx is done or the status
// stream ends.
func (r *runState) loop(statuses <-chan update1.Status) error {
	for {
		select {
		case <-r.ctx.Done():
			r.stopPlan()
			return nil
		case err := <-r.planDone:
			r.planFinished(err)
		case s, ok := <-statuses:
			if !ok {
				r.stopPlan()
				if r.ctx.Err() != nil {
					return nil
				}
				return ErrStatusLost
			}
			r.follow(s)
		}
	}
}

// follow starts or cancels the plan as update_engine's status changes.
func (r *runState) follow(s update1.Status) {
	switch {
	case r.rebooted:
	case s.NeedsReboot() && r.planDone == nil:
		r.startPlan(s)
	case !s.NeedsReboot() && r.planDone != nil:
		r.m.logf("update_engine left %s (%s); canceling the reboot plan", update1.StatusUpdatedNeedReboot, s.CurrentOperation)
		r.cancelPlan()
	case !s.NeedsReboot() && r.planDone == nil && r.intent.Phase != PhaseNone:
		r.settle(s)
	}
}

func (r *runState) startPlan(s update1.Status) {
	pctx, cancel := context.WithCancel(r.ctx)
	done := make(chan error, 1)
	r.planDone, r.cancelPlan = done, cancel
	resume := r.intent.Phase == PhaseRebooting && r.intent.BootID == r.m.bootID()
	go func() { done <- r.m.plan(pctx, s, resume) }()
}

// stopPlan cancels the plan in flight, if any, and waits for it.
func (r *runState) stopPlan() {
	if r.cancelPlan != nil {
		r.cancelPlan()
		<-r.planDone
	}
}

// planFinished handles the plan's end: a requested reboot, or a plan
// canceled because update_engine left NEED_REBOOT.
func (r *runState) planFinished(err error) {
	r.cancelPlan()
	r.planDone, r.cancelPlan = nil, nil
	if err == nil {
		r.rebooted = true
		r.m.logf("reboot requested; waiting for shutdown")
		return
	}
	if r.ctx.Err() != nil {
		return
	}
	if in, lerr := r.m.loadIntent(); lerr == nil {
		r.intent = in
	}
	r.settle(update1.Status{CurrentOperation: "(plan canceled)"})
}

// settle: not (or no longer) needing a reboot, release what we hold.
func (r *runState) settle(s update1.Status) {
	m, intent := r.m, r.intent
	if m.Lock != nil {
		if intent.Phase != PhaseNone {
			m.logf("update_engine reports %s after %s reboot for %q; releasing the reboot lock",
				s.CurrentOperation, intent.Phase, intent.Version)
		}
		if err := m.retry(r.ctx, "release reboot lock", m.Lock.Unlock); err != nil {
			return
		}
	}
	if intent.Phase != PhaseNone {
		r.intent = Intent{}
		m.saveIntent(r.intent)
	}
	m.setState(StateRunning)
}

func (m *Manager) loadIntent() (Intent, error) {
	if m.StateFile == "" {
		return Intent{}, nil
	}
	return LoadIntent(m.StateFile)
}

// plan waits for the window, takes the lock, warns users and reboots.
// resume skips the window wait (the host had already committed).
func (m *Manager) plan(ctx context.Context, s update1.Status, resume bool) error {
	m.setState(StateRebootPlanned)
	m.logf("update %q needs a reboot (strategy %v)", s.NewVersion, m.Strategy)
	for {
		if m.Window != nil && !resume {
			if d := m.Window.Wait(m.Clock.Now()); d > 0 {
				if m.Lock != nil {
					// Never sit on a slot while waiting (e.g. a lock
					// left from before a restart).
					if err := m.retry(ctx, "release reboot lock", m.Lock.Unlock); err != nil {
						return err
					}
				}
				m.logf("waiting %v for the reboot window (%v)", d, m.Window)
				if err := clock.Sleep(ctx, m.Clock, d); err != nil {
					return err
				}
			}
		}
		if m.Lock != nil {
			if err := m.retry(ctx, "take reboot lock", m.Lock.Lock); err != nil {
				return err
			}
			m.saveIntent(Intent{Phase: PhaseLocked, Version: s.NewVersion, Since: m.Clock.Now(), BootID: m.bootID()})
		}
		// Taking the lock may have outlasted the window: give the slot
		// back and wait for the next one rather than reboot outside it.
		if m.Lock == nil || m.Window == nil || resume || m.Window.Wait(m.Clock.Now()) == 0 {
			break
		}
		m.logf("reboot window closed while waiting for the lock; releasing it")
		if err := m.retry(ctx, "release reboot lock", m.Lock.Unlock); err != nil {
			return err
		}
		m.saveIntent(Intent{})
	}
	m.saveIntent(Intent{Phase: PhaseRebooting, Version: s.NewVersion, Since: m.Clock.Now(), BootID: m.bootID()})
	m.setState(StateRebooting)
	if m.Warner != nil {
		n, err := m.Warner.Warn(RebootMessage(m.WarnDelay))
		if err != nil {
			m.logf("warn users: %v", err)
		}
		if n > 0 && m.WarnDelay > 0 {
			m.logf("warned %d logged-in users; rebooting in %v", n, m.WarnDelay)
			if err := clock.Sleep(ctx, m.Clock, m.WarnDelay); err != nil {
				return err
			}
		}
	}
	return m.retry(ctx, "reboot", m.Rebooter.Reboot)
}
