package rebootmgr

import (
	"errors"
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Skipf("SKIP: time zone %s unavailable: %v", name, err)
	}
	return loc
}

func TestParseWindow(t *testing.T) {
	tests := []struct {
		name, start, length string
		want                *Window
		wantErr             error
	}{
		{name: "neither", want: nil},
		{name: "daily", start: "04:00", length: "1h30m", want: &Window{Hour: 4, Length: 90 * time.Minute}},
		{name: "weekly", start: "Thu 23:05", length: "2h", want: &Window{Weekly: true, Weekday: time.Thursday, Hour: 23, Minute: 5, Length: 2 * time.Hour}},
		{name: "case-insensitive", start: "sUn 00:00", length: "1m", want: &Window{Weekly: true, Weekday: time.Sunday, Length: time.Minute}},
		{name: "full day name", start: "saturday 12:00", length: "1h", want: &Window{Weekly: true, Weekday: time.Saturday, Hour: 12, Length: time.Hour}},
		{name: "start only", start: "04:00", wantErr: ErrBadWindow},
		{name: "length only", length: "1h", wantErr: ErrBadWindow},
		{name: "bad hour", start: "24:00", length: "1h", wantErr: ErrBadWindow},
		{name: "bad minute", start: "10:0", length: "1h", wantErr: ErrBadWindow},
		{name: "bad day", start: "Fun 10:00", length: "1h", wantErr: ErrBadWindow},
		{name: "too many words", start: "Mon Tue 10:00", length: "1h", wantErr: ErrBadWindow},
		{name: "bad length", start: "10:00", length: "an hour", wantErr: ErrBadWindow},
		{name: "negative length", start: "10:00", length: "-1h", wantErr: ErrBadWindow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseWindow(tt.start, tt.length)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestWindowNext(t *testing.T) {
	utc := time.UTC
	berlin := mustLoc(t, "Europe/Berlin")
	d := func(loc *time.Location, y int, m time.Month, day, h, min int) time.Time {
		return time.Date(y, m, day, h, min, 0, 0, loc)
	}
	// 2026-11-26 is a Thursday.
	tests := []struct {
		name          string
		start, length string
		now           time.Time
		wantStart     time.Time
		wantWait      time.Duration
	}{
		{"inside daily", "04:00", "1h", d(utc, 2026, 11, 26, 4, 30), d(utc, 2026, 11, 26, 4, 0), 0},
		{"before daily", "04:00", "1h", d(utc, 2026, 11, 26, 3, 0), d(utc, 2026, 11, 26, 4, 0), time.Hour},
		{"after daily", "04:00", "1h", d(utc, 2026, 11, 26, 5, 0), d(utc, 2026, 11, 27, 4, 0), 23 * time.Hour},
		{"at end is outside", "04:00", "1h", d(utc, 2026, 11, 26, 5, 0), d(utc, 2026, 11, 27, 4, 0), 23 * time.Hour},
		{"at start is inside", "04:00", "1h", d(utc, 2026, 11, 26, 4, 0), d(utc, 2026, 11, 26, 4, 0), 0},
		{"crossing midnight inside", "23:30", "1h", d(utc, 2026, 11, 27, 0, 15), d(utc, 2026, 11, 26, 23, 30), 0},
		{"crossing midnight after", "23:30", "1h", d(utc, 2026, 11, 27, 0, 30), d(utc, 2026, 11, 27, 23, 30), 23 * time.Hour},
		{"weekly later this week", "Sat 10:00", "1h", d(utc, 2026, 11, 26, 12, 0), d(utc, 2026, 11, 28, 10, 0), 46 * time.Hour},
		{"weekly wraps to next week", "Mon 02:00", "1h", d(utc, 2026, 11, 26, 12, 0), d(utc, 2026, 11, 30, 2, 0), 3*24*time.Hour + 14*time.Hour},
		{"weekly just passed", "Thu 10:00", "1h", d(utc, 2026, 11, 26, 11, 0), d(utc, 2026, 12, 3, 10, 0), 7*24*time.Hour - time.Hour},
		{"weekly crossing the week end inside", "Sat 23:00", "3h", d(utc, 2026, 11, 29, 1, 0), d(utc, 2026, 11, 28, 23, 0), 0},
		{"weekly crossing Sun to Mon inside", "Sun 23:00", "2h", d(utc, 2026, 11, 30, 0, 30), d(utc, 2026, 11, 29, 23, 0), 0},
		{"long window spans days", "Mon 00:00", "72h", d(utc, 2026, 11, 25, 12, 0), d(utc, 2026, 11, 23, 0, 0), 0},
		{"time zone local wall clock", "04:00", "1h", d(berlin, 2026, 11, 26, 3, 0), d(berlin, 2026, 11, 26, 4, 0), time.Hour},
		// DST starts 2026-03-29 02:00 CET → 03:00 CEST: the day has 23 h.
		{"spring forward next day", "04:00", "1h", d(berlin, 2026, 3, 28, 5, 0), d(berlin, 2026, 3, 29, 4, 0), 22 * time.Hour},
		// 02:30 does not exist that day; Go normalizes it to 03:30 CEST.
		{"spring forward missing start", "02:30", "1h", d(berlin, 2026, 3, 29, 1, 0), time.Date(2026, 3, 29, 1, 30, 0, 0, utc), 90 * time.Minute},
		{"spring forward weekly", "Sun 04:00", "1h", d(berlin, 2026, 3, 28, 4, 0), d(berlin, 2026, 3, 29, 4, 0), 23 * time.Hour},
		// DST ends 2026-10-25 03:00 CEST → 02:00 CET: the day has 25 h.
		{"fall back next day", "04:00", "1h", d(berlin, 2026, 10, 24, 5, 0), d(berlin, 2026, 10, 25, 4, 0), 24 * time.Hour},
		// 01:30 UTC is the second 02:30 local (CET); the window opened at
		// 01:00 CEST and lasts 3 h of elapsed time, until 02:00 UTC.
		{"fall back inside long window", "01:00", "3h", time.Date(2026, 10, 25, 1, 30, 0, 0, utc).In(berlin), d(berlin, 2026, 10, 25, 1, 0), 0},
		{"fall back after long window", "01:00", "3h", time.Date(2026, 10, 25, 2, 0, 0, 0, utc).In(berlin), d(berlin, 2026, 10, 26, 1, 0), 22 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := ParseWindow(tt.start, tt.length)
			if err != nil {
				t.Fatal(err)
			}
			s, e := w.Next(tt.now)
			if !s.Equal(tt.wantStart) {
				t.Errorf("start = %v, want %v", s, tt.wantStart)
			}
			if got := e.Sub(s); got != w.Length {
				t.Errorf("end-start = %v, want %v", got, w.Length)
			}
			if got := w.Wait(tt.now); got != tt.wantWait {
				t.Errorf("Wait = %v, want %v", got, tt.wantWait)
			}
		})
	}
}

func FuzzParseWindow(f *testing.F) {
	for _, s := range [][2]string{{"04:00", "1h"}, {"Sun 23:59", "1m"}, {"x", "y"}, {"mon 0:00", "200h"}} {
		f.Add(s[0], s[1])
	}
	now := time.Date(2026, 3, 29, 1, 59, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, start, length string) {
		w, err := ParseWindow(start, length)
		if err != nil || w == nil {
			return
		}
		if w.Length > 10000*time.Hour {
			return
		}
		s, e := w.Next(now)
		if !e.After(now) || e.Sub(s) != w.Length {
			t.Fatalf("%v: Next(%v) = %v..%v", w, now, s, e)
		}
	})
}
