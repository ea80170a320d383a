package omaha

import (
	"math/rand/v2"
	"testing"
	"time"
)

// fixedRand returns lo (0), hi (n-1) or the middle, to probe fuzz bounds.
type fixedRand struct{ pos string }

func (f fixedRand) Int64N(n int64) int64 {
	switch f.pos {
	case "lo":
		return 0
	case "hi":
		return n - 1
	}
	return n / 2
}

func TestScheduleFirst(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		r    Rand
		want time.Duration
	}{
		{"earliest", fixedRand{"lo"}, 2 * time.Minute},
		{"middle", fixedRand{"mid"}, 7 * time.Minute},
		{"latest", fixedRand{"hi"}, 12 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at, s := Schedule{}.First(start, tt.r)
			if got := at.Sub(start); got != tt.want {
				t.Errorf("first check after %v, want %v", got, tt.want)
			}
			if s.LastInterval != InitialCheckInterval {
				t.Errorf("state %+v", s)
			}
		})
	}
}

func TestScheduleNext(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	mid := fixedRand{"mid"}
	tests := []struct {
		name     string
		last     time.Duration
		o        CheckOutcome
		r        Rand
		want     time.Duration
		wantBase time.Duration
	}{
		{"regular", 45 * time.Minute, CheckOutcome{}, mid, 45 * time.Minute, 45 * time.Minute},
		{"regular earliest", 45 * time.Minute, CheckOutcome{}, fixedRand{"lo"}, 40 * time.Minute, 45 * time.Minute},
		{"regular latest", 45 * time.Minute, CheckOutcome{}, fixedRand{"hi"}, 50 * time.Minute, 45 * time.Minute},
		{"backoff after the first check stays 45", InitialCheckInterval, CheckOutcome{Backoff: true}, mid, 45 * time.Minute, 45 * time.Minute},
		{"backoff doubles", 45 * time.Minute, CheckOutcome{Backoff: true}, mid, 90 * time.Minute, 90 * time.Minute},
		{"backoff fuzz is ±half", 45 * time.Minute, CheckOutcome{Backoff: true}, fixedRand{"lo"}, 45 * time.Minute, 90 * time.Minute},
		{"backoff caps at 4h", 3 * time.Hour, CheckOutcome{Backoff: true}, mid, 4 * time.Hour, 4 * time.Hour},
		{"PollInterval wins over backoff", 3 * time.Hour, CheckOutcome{Backoff: true, PollInterval: 2 * time.Hour}, mid, 2 * time.Hour, 2 * time.Hour},
		{"short PollInterval raised to 45 min", 45 * time.Minute, CheckOutcome{PollInterval: time.Minute}, mid, 45 * time.Minute, 45 * time.Minute},
		{"long PollInterval capped", 45 * time.Minute, CheckOutcome{PollInterval: 10 * time.Hour}, mid, 4 * time.Hour, 4 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at, s := Schedule{LastInterval: tt.last}.Next(now, tt.o, tt.r)
			if got := at.Sub(now); got != tt.want {
				t.Errorf("next check after %v, want %v", got, tt.want)
			}
			if s.LastInterval != tt.wantBase {
				t.Errorf("LastInterval %v, want %v", s.LastInterval, tt.wantBase)
			}
		})
	}
}

func TestScheduleBackoffSequence(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var s Schedule
	_, s = s.First(now, r)
	var bases []time.Duration
	for range 6 {
		var at time.Time
		at, s = s.Next(now, CheckOutcome{Backoff: true}, r)
		d := at.Sub(now)
		if d < s.LastInterval/2 || d > s.LastInterval*3/2 {
			t.Errorf("interval %v outside ±half of %v", d, s.LastInterval)
		}
		bases = append(bases, s.LastInterval)
		now = at
	}
	want := []time.Duration{45 * time.Minute, 90 * time.Minute, 180 * time.Minute, 4 * time.Hour, 4 * time.Hour, 4 * time.Hour}
	for i := range want {
		if bases[i] != want[i] {
			t.Fatalf("backoff bases %v, want %v", bases, want)
		}
	}
}

func TestFailover(t *testing.T) {
	f := &Failover{URLs: []string{"a", "b"}, MaxFailuresPerURL: 2}
	steps := []struct {
		fail      int
		wantIndex int
		wantPass  int
	}{
		{0, 0, 0}, {0, 0, 0}, {0, 1, 0}, // a fails 3 > 2 times: move to b
		{0, 1, 0},                       // a's failures no longer move the index
		{1, 1, 0}, {1, 1, 0}, {1, 0, 1}, // b exhausted: wrap to a, one pass
	}
	for i, s := range steps {
		f.Fail(s.fail)
		if f.Current() != s.wantIndex || f.Passes != s.wantPass {
			t.Fatalf("step %d: index %d passes %d, want %d %d", i, f.Current(), f.Passes, s.wantIndex, s.wantPass)
		}
	}
}
