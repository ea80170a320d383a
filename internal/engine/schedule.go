package engine

import "time"

// Schedule says when automatic checks happen (SPEC.md section 3: first
// check 7 min after start, then every 45 min, both ±5 min uniform fuzz;
// failed checks back off by doubling up to 4 h; the server's PollInterval
// wins).
type Schedule struct {
	Disabled   bool          // no automatic checks (D-Bus only)
	Initial    time.Duration // first check after start (7m)
	Interval   time.Duration // between checks (45m)
	Fuzz       time.Duration // total width of the uniform fuzz (10m = ±5m; < 0 = none)
	MaxBackoff time.Duration // cap of the doubling backoff (4h)
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
	switch {
	case s.Fuzz == 0:
		// ±5 min around 45 min; shorter intervals keep the same share.
		s.Fuzz = min(10*time.Minute, s.Interval*2/9)
	case s.Fuzz < 0:
		s.Fuzz = 0
	}
	if s.MaxBackoff == 0 {
		s.MaxBackoff = 4 * time.Hour
	}
	return s
}

// fuzz returns d moved by a uniform amount in ±Fuzz/2; r is in [0,1).
func (s Schedule) fuzz(d time.Duration, r float64) time.Duration {
	d += time.Duration((r - 0.5) * float64(s.Fuzz))
	return max(d, 0)
}

func (s Schedule) first(r float64) time.Duration { return s.fuzz(s.Initial, r) }

// next returns the delay after a check: the server's poll interval when
// given, else Interval doubled per consecutive failure up to MaxBackoff,
// fuzzed.
func (s Schedule) next(r float64, failures int, poll time.Duration) time.Duration {
	if poll > 0 && failures == 0 {
		return poll
	}
	d := s.Interval
	for i := 0; i < failures && d < s.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.MaxBackoff)
	return s.fuzz(d, r)
}
