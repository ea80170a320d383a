package rebootmgr

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrBadWindow: a reboot window that does not parse, or only half of one.
var ErrBadWindow = errors.New("rebootmgr: invalid reboot window")

// Window is a periodic reboot window: daily at HH:MM or weekly on a day at
// HH:MM, lasting Length. Times are wall-clock times in the location of the
// instant passed to Next, so DST shifts move the window with local time.
type Window struct {
	Weekly  bool
	Weekday time.Weekday // when Weekly
	Hour    int
	Minute  int
	Length  time.Duration
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// ParseWindow parses LOCKSMITHD_REBOOT_WINDOW_START (`HH:MM` or `Day HH:MM`,
// case-insensitive, 24 h) and _LENGTH (a Go duration). Both empty means no
// window (nil, nil); one without the other is an error.
func ParseWindow(start, length string) (*Window, error) {
	start, length = strings.TrimSpace(start), strings.TrimSpace(length)
	if start == "" && length == "" {
		return nil, nil
	}
	if start == "" || length == "" {
		return nil, fmt.Errorf("%w: start %q and length %q must be set together", ErrBadWindow, start, length)
	}
	var w Window
	fields := strings.Fields(start)
	switch len(fields) {
	case 1:
	case 2:
		d, ok := weekdays[strings.ToLower(fields[0])]
		if !ok {
			return nil, fmt.Errorf("%w: day %q", ErrBadWindow, fields[0])
		}
		w.Weekly, w.Weekday = true, d
		fields = fields[1:]
	default:
		return nil, fmt.Errorf("%w: start %q", ErrBadWindow, start)
	}
	hh, mm, ok := strings.Cut(fields[0], ":")
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if !ok || err1 != nil || err2 != nil || h < 0 || h > 23 || m < 0 || m > 59 || len(mm) != 2 {
		return nil, fmt.Errorf("%w: time %q", ErrBadWindow, fields[0])
	}
	w.Hour, w.Minute = h, m
	d, err := time.ParseDuration(length)
	if err != nil || d <= 0 {
		return nil, fmt.Errorf("%w: length %q", ErrBadWindow, length)
	}
	w.Length = d
	return &w, nil
}

// Next returns the window that contains now, or else the next one to open.
// now is inside when start <= now < end. Pure: depends only on now
// (including its location).
func (w Window) Next(now time.Time) (start, end time.Time) {
	loc := now.Location()
	y, mo, d := now.Date()
	back := int(w.Length/(24*time.Hour)) + 8
	for k := -back; k <= 8; k++ {
		s := time.Date(y, mo, d+k, w.Hour, w.Minute, 0, 0, loc)
		if w.Weekly && time.Date(y, mo, d+k, 12, 0, 0, 0, loc).Weekday() != w.Weekday {
			continue
		}
		if e := s.Add(w.Length); e.After(now) {
			return s, e
		}
	}
	panic("rebootmgr: unreachable: no window within 8 days")
}

// Wait returns how long to wait from now until the window is open (0 when
// inside).
func (w Window) Wait(now time.Time) time.Duration {
	s, _ := w.Next(now)
	if !s.After(now) {
		return 0
	}
	return s.Sub(now)
}

// String formats w in the update.conf syntax.
func (w Window) String() string {
	s := fmt.Sprintf("%02d:%02d", w.Hour, w.Minute)
	if w.Weekly {
		s = w.Weekday.String()[:3] + " " + s
	}
	return s + " for " + w.Length.String()
}
