package omaha

// Failover tracks which payload URL to use and how often each failed, as
// FUE's payload state does: a URL is used until it failed more than
// MaxFailuresPerURL times, then the next one; after the last URL it wraps to
// the first and Passes counts full rounds. Its fields are plain data so the
// engine can persist them across restarts. Not safe for concurrent use.
type Failover struct {
	URLs              []string
	MaxFailuresPerURL int   // 0 = DefaultMaxFailureCountPerURL
	Index             int   // current URL
	Failures          []int // per URL, len(URLs)
	Passes            int   // times the index wrapped past the last URL
}

// NewFailover returns a Failover over plan's URLs with its
// MaxFailureCountPerURL.
func NewFailover(plan *Plan) *Failover {
	return &Failover{URLs: append([]string(nil), plan.URLs...), MaxFailuresPerURL: plan.MaxFailureCountPerURL}
}

// Current returns the index of the URL to try first.
func (f *Failover) Current() int {
	if f.Index < 0 || f.Index >= len(f.URLs) {
		f.Index = 0
	}
	return f.Index
}

// Fail counts one failure of URL i. When the current URL's count exceeds
// the maximum, the current URL moves on (and its count restarts).
func (f *Failover) Fail(i int) {
	if i < 0 || i >= len(f.URLs) {
		return
	}
	if len(f.Failures) != len(f.URLs) {
		f.Failures = make([]int, len(f.URLs))
	}
	f.Failures[i]++
	max := f.MaxFailuresPerURL
	if max <= 0 {
		max = DefaultMaxFailureCountPerURL
	}
	if i == f.Current() && f.Failures[i] > max {
		f.Failures[i] = 0
		f.Index++
		if f.Index >= len(f.URLs) {
			f.Index = 0
			f.Passes++
		}
	}
}
