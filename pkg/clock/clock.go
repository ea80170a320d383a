// Package clock is the one time source of the engine, the Omaha client
// and the reboot manager: an interface tests fake (Clock), the wall clock
// (Real), a wait that ends with its context (Sleep) and a jittered
// exponential delay (Backoff).
//
// Why a package of its own: pkg/omaha, pkg/rebootmgr and internal/engine
// all wait on injected time, and a pkg/ leaf is the only place all three
// may import. It imports only the standard library.
package clock

import (
	"context"
	"math/rand/v2"
	"time"
)

// Clock is a source of time. Production passes Real; tests inject a fake
// one whose After fires when the test moves its time.
type Clock interface {
	Now() time.Time
	// After fires once d has passed on this clock.
	After(d time.Duration) <-chan time.Time
}

// Real is the wall clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Sleep waits d on c, or until ctx is done (then it returns ctx's error).
// A nil c is the wall clock, with a timer that is stopped when ctx ends
// first.
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	if err := ctx.Err(); err != nil || d <= 0 {
		return err
	}
	if c == nil {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.After(d):
		return nil
	}
}

// Backoff is a jittered exponential delay: Min, doubling up to Max. The
// zero value is locksmith's 5 s → 5 min without jitter.
type Backoff struct {
	Min, Max time.Duration
	// Rand returns a number in [0, 1); nil means no jitter. Jitter is
	// the production source.
	Rand func() float64
}

// Jitter returns a random number in [0, 1) for Backoff.Rand.
func Jitter() float64 { return rand.Float64() }

// Delay returns the wait before retry number attempt (0-based): the
// doubled delay d, jittered into [d/2, d).
func (b Backoff) Delay(attempt int) time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 5 * time.Second
	}
	if hi <= 0 {
		hi = 5 * time.Minute
	}
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	if b.Rand != nil {
		d = d/2 + time.Duration(b.Rand()*float64(d/2))
	}
	return d
}
