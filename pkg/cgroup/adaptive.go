package cgroup

import (
	"fmt"
	"sync"
	"time"
)

// An adaptive limit: the Limiter's rate follows the I/O pressure of the
// host's other workloads, as Linux PSI measures it (the share of wall time
// in which at least one of their tasks waited for I/O, the "some" line of
// io.pressure). It is AIMD, as TCP's congestion window:
//
//   - it starts at the ceiling;
//   - after every interval in which the worst-off workload's stall share
//     was above the target, the rate is multiplied by Cut (halved by
//     default), or by target/share when that is smaller (far over the
//     target, one step cuts deeper: at 5× the target, to a fifth), never
//     below the floor, so the update always progresses;
//   - after every interval at or under the target, it grows by Step, never
//     above the ceiling.
//
// The pressure is the workloads', not the host's: /proc/pressure/io counts
// the update's own writer too, which waits in the kernel for every
// throttled write (on this project's 2-core test host a writer held to
// 8 MiB/s alone shows 50% "some"), so a controller fed with it would hold
// the update at its floor with nothing else running. See PSI for where the
// workloads' pressure is read.

// Defaults of AdaptiveConfig.
const (
	DefaultTarget   = 0.10
	DefaultInterval = 500 * time.Millisecond
	DefaultCut      = 0.5
)

// AdaptiveConfig tunes an Adaptive controller. Floor and Ceiling are
// required; the others have defaults.
type AdaptiveConfig struct {
	Floor, Ceiling uint64        // bytes/s; 0 < Floor <= Ceiling
	Target         float64       // stall share (0 < Target < 1) above which the rate is cut; 0 = DefaultTarget
	Interval       time.Duration // between Steps (the caller's ticker); 0 = DefaultInterval
	Cut            float64       // largest multiplier after an interval over the target (0 < Cut < 1); 0 = DefaultCut
	Step           uint64        // bytes/s added after an interval under it; 0 = max(Floor/2, (Ceiling-Floor)/64)
}

func (c AdaptiveConfig) withDefaults() (AdaptiveConfig, error) {
	if c.Floor == 0 || c.Ceiling < c.Floor {
		return c, fmt.Errorf("%w: adaptive limit needs 0 < floor (%d) <= ceiling (%d)", ErrInvalidConfig, c.Floor, c.Ceiling)
	}
	if c.Target == 0 {
		c.Target = DefaultTarget
	}
	if c.Target <= 0 || c.Target >= 1 {
		return c, fmt.Errorf("%w: pressure target %g must be between 0 and 1", ErrInvalidConfig, c.Target)
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Cut == 0 {
		c.Cut = DefaultCut
	}
	if c.Cut <= 0 || c.Cut >= 1 {
		return c, fmt.Errorf("%w: cut %g must be between 0 and 1", ErrInvalidConfig, c.Cut)
	}
	if c.Step == 0 {
		c.Step = max(c.Floor/2, (c.Ceiling-c.Floor)/64, 1)
	}
	return c, nil
}

// PressureSource reports the cumulative I/O stall time ("some" total) of
// each workload group the update must not slow down, keyed by a stable
// name. Groups may come and go between calls.
type PressureSource interface {
	Stalls() (map[string]time.Duration, error)
}

// RateSetter is where the controller puts its rate; *Limiter is one.
type RateSetter interface {
	SetWriteBPS(bps uint64) error
}

// Adaptive sets a RateSetter's rate from a PressureSource. Create it with
// NewAdaptive, then call Step every Config().Interval.
type Adaptive struct {
	cfg AdaptiveConfig   // immutable
	src PressureSource   // immutable
	dst RateSetter       // immutable
	now func() time.Time // immutable

	mu       sync.Mutex // guards the following
	rate     uint64
	prev     map[string]time.Duration
	prevAt   time.Time
	pressure float64 // the last interval's worst stall share
}

// NewAdaptive returns a controller that starts at cfg.Ceiling; it sets
// that rate on dst at once. now is the clock (time.Now in production).
func NewAdaptive(cfg AdaptiveConfig, src PressureSource, dst RateSetter, now func() time.Time) (*Adaptive, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := dst.SetWriteBPS(cfg.Ceiling); err != nil {
		return nil, err
	}
	return &Adaptive{cfg: cfg, src: src, dst: dst, now: now, rate: cfg.Ceiling}, nil
}

// Config returns the controller's settings, defaults filled in.
func (a *Adaptive) Config() AdaptiveConfig { return a.cfg }

// Rate returns the rate last set, bytes/s.
func (a *Adaptive) Rate() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rate
}

// Pressure returns the worst workload's stall share over the last
// interval (0 to 1).
func (a *Adaptive) Pressure() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pressure
}

// Step samples the pressure, moves the rate and returns it. The first
// call only takes the first sample. When the source or the setter fails,
// the rate stays where it was and the error is returned; the next Step
// measures from the last good sample.
func (a *Adaptive) Step() (uint64, error) {
	stalls, err := a.src.Stalls()
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		return a.rate, err
	}
	dt := now.Sub(a.prevAt)
	if a.prev == nil || dt <= 0 {
		a.prev, a.prevAt = stalls, now
		return a.rate, nil
	}
	worst := 0.0
	for name, s := range stalls {
		if p, ok := a.prev[name]; ok && s > p {
			worst = max(worst, float64(s-p)/float64(dt))
		}
	}
	worst = min(worst, 1)
	a.prev, a.prevAt, a.pressure = stalls, now, worst
	next := a.rate
	if worst > a.cfg.Target {
		next = max(a.cfg.Floor, uint64(float64(a.rate)*min(a.cfg.Cut, a.cfg.Target/worst)))
	} else {
		next = min(a.cfg.Ceiling, a.rate+a.cfg.Step)
	}
	if next != a.rate {
		if err := a.dst.SetWriteBPS(next); err != nil {
			return a.rate, err
		}
		a.rate = next
	}
	return a.rate, nil
}
