package engine

import (
	"time"

	"github.com/abupdate/update_engine/internal/update"
	"github.com/abupdate/update_engine/pkg/omaha"
)

// Observer hears what the engine does: every published snapshot (the
// D-Bus signal) and the measurements behind the metrics, as typed
// Observations. The engine calls it from its owner goroutine and from its
// workers, so calls may be concurrent; Observe must not block.
type Observer interface {
	Observe(Observation)
}

// Observation is one thing the engine reports: one of the types below.
type Observation interface{ observation() }

// StatusChanged is a published snapshot: a status change, a progress step
// of at least 1 %, 10 s since the last one during a download, the end of
// the download, and once at start.
type StatusChanged struct{ Snapshot }

// CheckDone is a finished update check.
type CheckDone struct {
	Result update.CheckResult
	At     time.Time
}

// Downloaded is payload bytes received.
type Downloaded struct{ Bytes int64 }

// Written is bytes written to the passive slot.
type Written struct{ Bytes int64 }

// ApplyDone is a finished download and apply: Bytes of payload (from the
// resume offset on) in Took.
type ApplyDone struct {
	Bytes int64
	Took  time.Duration
}

// Resumed is a download resumed from a checkpoint.
type Resumed struct{}

// Failed is a failed attempt, a detected rollback included; Code carries
// no flag bits.
type Failed struct{ Code omaha.Code }

// FlipToGood is the time from the flip to marking the updated slot good.
type FlipToGood struct{ After time.Duration }

func (StatusChanged) observation() {}
func (CheckDone) observation()     {}
func (Downloaded) observation()    {}
func (Written) observation()       {}
func (ApplyDone) observation()     {}
func (Resumed) observation()       {}
func (Failed) observation()        {}
func (FlipToGood) observation()    {}

// observe tells the observer, when there is one.
func (e *Engine) observe(o Observation) {
	if e.cfg.Observer != nil {
		e.cfg.Observer.Observe(o)
	}
}
