package engine

import "time"

// Schedule says when automatic checks happen, by the rules of Flatcar's
// update_check_scheduler (SPEC.md section 3): the first check Initial
// after start, then every Interval, both with the regular fuzz; after a
// check that failed with HTTP 500 or 503 the last interval doubles, up to
// MaxBackoff; the server's PollInterval wins over both. An interval at or
// above Interval is fuzzed by ±half of itself.
type Schedule struct {
	Disabled   bool          // no automatic checks (D-Bus only)
	Initial    time.Duration // first check after start (7m)
	Interval   time.Duration // between checks, and the floor of every interval (45m)
	Fuzz       time.Duration // total width of the regular uniform fuzz (10m = ±5m; < 0 = no fuzz at all)
	MaxBackoff time.Duration // cap of every interval, backoff or PollInterval (4h)
	// ResumeDelay is the first check's delay when the daemon starts with
	// an interrupted update in prefs (0 = at once).
	ResumeDelay time.Duration
}

func (s Schedule) withDefaults() Schedule {
	if s.Initial == 0 {
		s.Initial = 7 * time.Minute
	}
	if s.Interval == 0 {
		s.Interval = 45 * time.Minute
	}
	if s.Fuzz == 0 {
		// ±5 min around 45 min; shorter intervals keep the same share.
		s.Fuzz = min(10*time.Minute, s.Interval*2/9)
	}
	if s.MaxBackoff == 0 {
		s.MaxBackoff = 4 * time.Hour
	}
	return s
}

// fuzz returns d moved by a uniform amount in ±width/2; r is in [0,1).
// A negative Fuzz turns every fuzz off (tests that read exact delays).
func (s Schedule) fuzz(d, width time.Duration, r float64) time.Duration {
	if s.Fuzz < 0 {
		return d
	}
	d += time.Duration((r - 0.5) * float64(width))
	return max(d, 0)
}

// first returns the delay of the first check and the unfuzzed interval
// the next one doubles from after a backoff (FUE last_interval_).
func (s Schedule) first(r float64) (delay, interval time.Duration) {
	return s.fuzz(s.Initial, s.Fuzz, r), s.Initial
}

// next returns the delay after a check and its unfuzzed interval, as FUE's
// ComputeNextIntervalAndFuzz: poll is the PollInterval of the last answer
// (0 = none) and wins; else backoff (the check failed with HTTP 500 or
// 503, omaha.Backoff) doubles last, the previous unfuzzed interval. The
// result is capped at MaxBackoff; under Interval it becomes Interval with
// the regular fuzz, otherwise the fuzz spans the whole interval.
func (s Schedule) next(r float64, last, poll time.Duration, backoff bool) (delay, interval time.Duration) {
	switch {
	case poll > 0:
		interval = poll
	case backoff:
		interval = 2 * last
	}
	interval = min(interval, s.MaxBackoff)
	width := interval
	if interval < s.Interval {
		interval, width = s.Interval, s.Fuzz
	}
	return s.fuzz(interval, width, r), interval
}
