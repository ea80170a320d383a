package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether w is a terminal (TCGETS succeeds on it).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progress prints one self-overwriting line — bytes done of total, rate,
// ETA — at the first bytes, then at most every interval, and a final line
// with a newline.
type progress struct {
	w        io.Writer
	total    int64
	done     int64
	now      func() time.Time
	start    time.Time
	last     time.Time
	interval time.Duration
	printed  bool
}

func newProgress(w io.Writer, total int64, now func() time.Time) *progress {
	return &progress{w: w, total: total, now: now, start: now(), interval: 500 * time.Millisecond}
}

// add counts n more bytes done.
func (p *progress) add(n int64) {
	p.done += n
	t := p.now()
	if p.printed && t.Sub(p.last) < p.interval {
		return
	}
	p.last = t
	p.print(t, false)
}

// finish prints the final line (if any was printed: no bytes, no line).
func (p *progress) finish() {
	if p.printed {
		p.print(p.now(), true)
	}
}

func (p *progress) print(t time.Time, final bool) {
	p.printed = true
	done := min(p.done, p.total)
	el := t.Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(done) / float64(p.total)
	}
	line := fmt.Sprintf("\r%s / %s (%.0f%%), %s/s", sizeString(done), sizeString(p.total), pct, sizeString(int64(rate)))
	switch {
	case final:
		line += fmt.Sprintf(", %s\x1b[K\n", time.Duration(el*float64(time.Second)).Round(time.Second))
	case rate > 0:
		eta := time.Duration(float64(p.total-done) / rate * float64(time.Second)).Round(time.Second)
		line += fmt.Sprintf(", ETA %s\x1b[K", eta)
	default:
		line += ", ETA ?\x1b[K"
	}
	io.WriteString(p.w, line)
}

// sizeString is n in binary units with one decimal ("1.5 GiB").
func sizeString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), -1
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[i])
}
