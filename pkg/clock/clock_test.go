package clock

import (
	"context"
	"errors"
	"testing"
	"time"
)

// stepClock fires every After at once and records the waits.
type stepClock struct{ waits []time.Duration }

func (c *stepClock) Now() time.Time { return time.Unix(0, 0) }

func (c *stepClock) After(d time.Duration) <-chan time.Time {
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	ch <- time.Unix(0, 0).Add(d)
	return ch
}

// neverClock's After never fires.
type neverClock struct{}

func (neverClock) Now() time.Time                       { return time.Unix(0, 0) }
func (neverClock) After(time.Duration) <-chan time.Time { return nil }

func TestSleep(t *testing.T) {
	c := &stepClock{}
	if err := Sleep(t.Context(), c, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := Sleep(t.Context(), c, 0); err != nil {
		t.Fatal(err)
	}
	if len(c.waits) != 1 || c.waits[0] != 3*time.Second {
		t.Errorf("waits = %v, want [3s] (a zero wait asks no timer)", c.waits)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Clock
	}{{"fake", neverClock{}}, {"wall", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := Sleep(ctx, tc.c, time.Hour); !errors.Is(err, context.Canceled) {
				t.Errorf("Sleep after cancel = %v, want context.Canceled", err)
			}
		})
	}
}

func TestSleepWall(t *testing.T) {
	start := time.Now()
	if err := Sleep(t.Context(), nil, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 10*time.Millisecond {
		t.Errorf("slept %v, want at least 10ms", el)
	}
}

func TestBackoffLocksmith(t *testing.T) {
	b := Backoff{}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		if got := b.Delay(i); got != w {
			t.Errorf("Delay(%d) = %v, want %v", i, got, w)
		}
	}
	j := Backoff{Rand: func() float64 { return 0.5 }}
	if got := j.Delay(0); got != 3750*time.Millisecond {
		t.Errorf("jittered Delay(0) = %v, want 3.75s", got)
	}
	if got := j.Delay(100); got < 150*time.Second || got >= 5*time.Minute {
		t.Errorf("jittered Delay(100) = %v, want in [2.5m, 5m)", got)
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{}
	for attempt, want := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second} {
		if got := b.Delay(attempt); got != want {
			t.Errorf("Delay(%d) = %v, want %v", attempt, got, want)
		}
	}
	if got := b.Delay(100); got != 5*time.Minute {
		t.Errorf("Delay(100) = %v, want the 5m cap", got)
	}
	j := Backoff{Min: time.Second, Max: 4 * time.Second, Rand: func() float64 { return 0.5 }}
	if got := j.Delay(1); got != 1500*time.Millisecond {
		t.Errorf("jittered Delay(1) = %v, want 1.5s (2s jittered into [1s, 2s))", got)
	}
	for range 100 {
		if r := Jitter(); r < 0 || r >= 1 {
			t.Fatalf("Jitter() = %v, want [0, 1)", r)
		}
	}
}
