package engine

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestScheduleNext pins Flatcar's ComputeNextIntervalAndFuzz (SPEC.md
// section 3) with the random draw r given: r = 0 is the low edge of the
// fuzz, 0.5 its middle.
func TestScheduleNext(t *testing.T) {
	const m, h = time.Minute, time.Hour
	def := Schedule{}.withDefaults()
	tests := []struct {
		name         string
		s            Schedule
		r            float64
		last, poll   time.Duration
		backoff      bool
		want, wantIv time.Duration // fuzzed delay, unfuzzed interval
	}{
		{"middle", def, 0.5, 45 * m, 0, false, 45 * m, 45 * m},
		{"low fuzz", def, 0, 45 * m, 0, false, 40 * m, 45 * m},
		{"high fuzz", def, 0.75, 45 * m, 0, false, 47*m + 30*time.Second, 45 * m},
		{"after the first check", def, 0.5, 7 * m, 0, false, 45 * m, 45 * m},
		{"backoff from the first: 14m is under the floor", def, 0, 7 * m, 0, true, 40 * m, 45 * m},
		{"one failure doubles", def, 0.5, 45 * m, 0, true, 90 * m, 90 * m},
		{"doubled interval: fuzz is ±half", def, 0, 45 * m, 0, true, 45 * m, 90 * m},
		{"capped at 4h", def, 0.5, 3 * h, 0, true, 4 * h, 4 * h},
		{"cap holds", def, 0, 4 * h, 0, true, 2 * h, 4 * h},
		{"no backoff: back to the regular interval", def, 0.5, 4 * h, 0, false, 45 * m, 45 * m},
		{"poll interval", def, 0.5, 45 * m, 2 * h, false, 2 * h, 2 * h},
		{"poll interval: fuzz is ±half", def, 0, 45 * m, 2 * h, false, 1 * h, 2 * h},
		{"poll interval wins over backoff", def, 0.5, 3 * h, 1 * h, true, 1 * h, 1 * h},
		{"poll interval under the floor", def, 0, 45 * m, 10 * m, false, 40 * m, 45 * m},
		{"poll interval capped", def, 0.5, 45 * m, 10 * h, false, 4 * h, 4 * h},
		{"no fuzz", Schedule{Fuzz: -1}.withDefaults(), 0, 45 * m, 0, true, 90 * m, 90 * m},
		{"configured floor", Schedule{Interval: 100 * time.Millisecond, Fuzz: -1}.withDefaults(), 0, 100 * time.Millisecond, 10 * time.Millisecond, false, 100 * time.Millisecond, 100 * time.Millisecond},
		{"configured backoff", Schedule{Interval: 100 * time.Millisecond, MaxBackoff: time.Second}.withDefaults(), 0.5, 800 * time.Millisecond, 0, true, time.Second, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, iv := tt.s.next(tt.r, tt.last, tt.poll, tt.backoff)
			if got != tt.want || iv != tt.wantIv {
				t.Fatalf("next = %v, interval %v; want %v, %v", got, iv, tt.want, tt.wantIv)
			}
		})
	}
	if got, iv := def.first(0.5); got != 7*m || iv != 7*m {
		t.Fatalf("first = %v, %v", got, iv)
	}
	if got, _ := def.first(0); got != 2*m {
		t.Fatalf("first at the low edge = %v", got)
	}
}

// TestScheduleBounds draws from a seeded source: a backoff chain from the
// first check stays within ±half (±5 min at the floor) of 45m, 90m, 3h,
// 4h, 4h.
func TestScheduleBounds(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, seed>>7|1))
	s := Schedule{}.withDefaults()
	for range 200 {
		d, last := s.first(rnd.Float64())
		if d < 2*time.Minute || d > 12*time.Minute {
			t.Fatalf("first check after %v", d)
		}
		for _, want := range []time.Duration{45 * time.Minute, 90 * time.Minute, 3 * time.Hour, 4 * time.Hour, 4 * time.Hour} {
			d, last = s.next(rnd.Float64(), last, 0, true)
			half := want / 2
			if want == 45*time.Minute {
				half = 5 * time.Minute
			}
			if last != want || d < want-half || d > want+half {
				t.Fatalf("delay %v, interval %v; want %v ± %v", d, last, want, half)
			}
		}
	}
}
