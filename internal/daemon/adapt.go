package daemon

import (
	"context"
	"crypto/rsa"
	"errors"
	"time"

	"github.com/abupdate/update_engine/internal/dbusapi"
	"github.com/abupdate/update_engine/internal/engine"
	"github.com/abupdate/update_engine/internal/metrics"
	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/pkg/cgroup"
)

type payloadKey = rsa.PublicKey

func toStatus(s engine.Snapshot) dbusapi.Status {
	return dbusapi.Status{
		LastCheckedTime: s.LastChecked, Progress: s.Progress, CurrentOperation: s.Status.String(),
		NewVersion: s.NewVersion, NewSize: s.NewSize,
	}
}

// busEngine adapts *engine.Engine to dbusapi.Engine.
type busEngine struct {
	e             *engine.Engine
	allowOmahaURL bool
	lim           *cgroup.Limiter // nil = no I/O limit
	adaptive      bool            // lim's rate is moved by an adaptive controller
	limErr        error           // a configured limit that could not be applied
}

// errOmahaURL refuses a ChromeOS AttemptUpdate(s,s) naming a server.
var errOmahaURL = errors.New("daemon: omaha_url refused: update_engine was not started with --allow-omaha-url")

func (b busEngine) Status() dbusapi.Status { return toStatus(b.e.Snapshot()) }

func (b busEngine) Detail() dbusapi.Detail {
	s := b.e.Snapshot()
	d := dbusapi.Detail{
		Status: toStatus(s), CurrentVersion: s.CurrentVersion, Channel: s.Channel, Server: s.Server,
		BootedSlot: s.BootedSlot, NextBootSlot: s.NextBootSlot, LastError: int32(s.LastError),
		LastErrorMessage: s.LastErrorMessage, Resumes: s.Resumes, BytesDownloaded: s.BytesDownloaded,
		CanRollback: s.CanRollback,
	}
	if s.LastError != status.Success {
		d.LastErrorName = s.LastError.String()
	}
	if d.IOWriteLimit = b.lim.WriteBPS(); d.IOWriteLimit > 0 {
		d.IOLimit = "fixed"
		if b.adaptive {
			d.IOLimit = "adaptive"
		}
	}
	if b.limErr != nil {
		d.IOLimitError = b.limErr.Error()
	}
	return d
}

// AttemptUpdate starts a check (the engine ignores it while SERVER=disabled,
// unless the caller named a server of its own: ChromeOS AttemptUpdate(s,s)).
func (b busEngine) AttemptUpdate(ctx context.Context, r dbusapi.UpdateRequest) error {
	if r.OmahaURL != "" && !b.allowOmahaURL {
		return errOmahaURL
	}
	return b.e.AttemptUpdate(ctx, r.OmahaURL)
}
func (b busEngine) ResetStatus(ctx context.Context) error { return b.e.ResetStatus(ctx) }
func (b busEngine) AttemptRollback(ctx context.Context, powerwash bool) error {
	return b.e.AttemptRollback(ctx, powerwash)
}
func (b busEngine) SetChannel(ctx context.Context, ch string) error { return b.e.SetChannel(ctx, ch) }

// metricsAdapter adapts *metrics.Metrics to engine.Metrics.
type metricsAdapter struct{ m *metrics.Metrics }

func (a metricsAdapter) CheckDone(r engine.CheckResult, at time.Time) {
	a.m.CheckDone(metrics.CheckResult(r), at)
}
func (a metricsAdapter) AddDownloaded(n int64)                 { a.m.AddDownloaded(n) }
func (a metricsAdapter) AddWritten(n int64)                    { a.m.AddWritten(n) }
func (a metricsAdapter) ObserveApply(n int64, d time.Duration) { a.m.ObserveApply(n, d) }
func (a metricsAdapter) Resumed()                              { a.m.Resumed() }
func (a metricsAdapter) Error(c status.Code)                   { a.m.Error(c) }
func (a metricsAdapter) SetStatus(s status.Update)             { a.m.SetStatus(s) }
func (a metricsAdapter) ObserveFlipToGood(d time.Duration)     { a.m.ObserveFlipToGood(d) }
