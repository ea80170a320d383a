package rebootmgr

import (
	"context"
	"time"
)

// Clock is the manager's source of time. Tests inject a fake one; main
// passes SystemClock.
type Clock interface {
	Now() time.Time
	// After fires once d has passed on this clock.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// sleep waits d on c, or until ctx is done.
func sleep(ctx context.Context, c Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.After(d):
		return nil
	}
}

// Backoff is a jittered exponential delay: Min, doubling up to Max. The
// zero value is locksmith's 5 s → 5 min.
type Backoff struct {
	Min, Max time.Duration
	// Rand returns a number in [0, 1); nil means no jitter.
	Rand func() float64
}

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
