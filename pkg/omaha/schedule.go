package omaha

import "time"

// Check scheduling constants (FUE update_check_scheduler.cc). A fuzz F
// spreads an interval uniformly over ±F/2.
const (
	InitialCheckInterval  = 7 * time.Minute
	PeriodicCheckInterval = 45 * time.Minute
	MaxBackoffInterval    = 4 * time.Hour
	RegularFuzz           = 10 * time.Minute
)

// Rand is the injected random source: Int64N returns a uniform value in
// [0, n). *math/rand/v2.Rand satisfies it.
type Rand interface {
	Int64N(n int64) int64
}

// Schedule is the scheduler's state between checks: the unfuzzed interval
// last scheduled (FUE last_interval_). The zero value is "not started".
type Schedule struct {
	LastInterval time.Duration
}

// CheckOutcome is what the last check produced, as the scheduler needs it.
type CheckOutcome struct {
	// PollInterval is the server-dictated interval (Plan.PollInterval), 0
	// when none; it wins over backoff.
	PollInterval time.Duration
	// Backoff is true after a 5xx answer or a network failure
	// (Backoff(err)).
	Backoff bool
}

// First returns when the first check happens after start: 7 min ± 5 min.
func (s Schedule) First(start time.Time, r Rand) (time.Time, Schedule) {
	return start.Add(fuzz(InitialCheckInterval, RegularFuzz, r)), Schedule{LastInterval: InitialCheckInterval}
}

// Next returns when the next check happens after a check that ended at now
// with outcome o, following FUE's ComputeNextIntervalAndFuzz: a server
// PollInterval is used with ±half fuzz; otherwise after backoff the last
// interval doubles; the result is capped at 4 h; anything under 45 min
// becomes 45 min ± 5 min.
func (s Schedule) Next(now time.Time, o CheckOutcome, r Rand) (time.Time, Schedule) {
	var interval, f time.Duration
	switch {
	case o.PollInterval > 0:
		interval = o.PollInterval
	case o.Backoff:
		interval = 2 * s.LastInterval
	}
	if interval > MaxBackoffInterval {
		interval = MaxBackoffInterval
	}
	if interval < PeriodicCheckInterval {
		interval, f = PeriodicCheckInterval, RegularFuzz
	}
	if f == 0 {
		f = interval
	}
	return now.Add(fuzz(interval, f, r)), Schedule{LastInterval: interval}
}

// fuzz returns a uniform duration in [v - f/2, v + f - f/2], whole
// seconds like FUE's FuzzInt, never negative.
func fuzz(v, f time.Duration, r Rand) time.Duration {
	vs, fs := int64(v/time.Second), int64(f/time.Second)
	lo := vs - fs/2
	d := lo + r.Int64N(fs+1)
	if d < 0 {
		d = 0
	}
	return time.Duration(d) * time.Second
}
