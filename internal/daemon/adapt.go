package daemon

import (
	"context"
	"crypto/rsa"
	"errors"
	"sync/atomic"

	"github.com/abupdate/update_engine/internal/dbusapi"
	"github.com/abupdate/update_engine/internal/engine"
	"github.com/abupdate/update_engine/internal/metrics"
	"github.com/abupdate/update_engine/pkg/cgroup"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/update1"
)

type payloadKey = rsa.PublicKey

func toStatus(s engine.Snapshot) update1.Status {
	return update1.Status{
		LastCheckedTime: s.LastChecked, Progress: s.Progress, CurrentOperation: s.Status.String(),
		NewVersion: s.NewVersion, NewSize: s.NewSize,
	}
}

// busEngine is the engine as D-Bus sees it (dbusapi.Engine): ResetStatus,
// AttemptRollback and SetChannel are the engine's own.
type busEngine struct {
	*engine.Engine
	allowOmahaURL bool
	lim           *cgroup.Limiter // nil = no I/O limit
	adaptive      bool            // lim's rate is moved by an adaptive controller
	limErr        error           // a configured limit that could not be applied
}

// errOmahaURL refuses a ChromeOS AttemptUpdate(s,s) naming a server.
var errOmahaURL = errors.New("daemon: omaha_url refused: update_engine was not started with --allow-omaha-url")

func (b busEngine) Status() update1.Status { return toStatus(b.Snapshot()) }

func (b busEngine) Detail() update1.Detail {
	s := b.Snapshot()
	d := update1.Detail{
		Status: toStatus(s), CurrentVersion: s.CurrentVersion, Channel: s.Channel, Server: s.Server,
		BootedSlot: s.BootedSlot, NextBootSlot: s.NextBootSlot, LastError: int32(s.LastError),
		LastErrorMessage: s.LastErrorMessage, Resumes: s.Resumes, BytesDownloaded: s.BytesDownloaded,
		CanRollback: s.CanRollback,
	}
	if s.LastError != omaha.Success {
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
	return b.Engine.AttemptUpdate(ctx, r.OmahaURL)
}

// observer fans the engine's observations out: every published snapshot
// to the D-Bus signal (once exported) and the status metrics, the
// measurements to the metrics.
type observer struct {
	m   *metrics.Metrics
	srv atomic.Pointer[dbusapi.Server] // nil until exported
}

// Observe implements engine.Observer.
func (o *observer) Observe(ob engine.Observation) {
	switch v := ob.(type) {
	case engine.StatusChanged:
		o.m.SetStatus(v.Status)
		o.signal(v.Snapshot)
	case engine.CheckDone:
		o.m.CheckDone(v.Result, v.At)
	case engine.Downloaded:
		o.m.AddDownloaded(v.Bytes)
	case engine.Written:
		o.m.AddWritten(v.Bytes)
	case engine.ApplyDone:
		o.m.ObserveApply(v.Bytes, v.Took)
	case engine.Resumed:
		o.m.Resumed()
	case engine.Failed:
		o.m.Error(v.Code)
	case engine.FlipToGood:
		o.m.ObserveFlipToGood(v.After)
	}
}

// export sends the signals to srv from now on, starting with s.
func (o *observer) export(srv *dbusapi.Server, s engine.Snapshot) {
	o.srv.Store(srv)
	o.signal(s)
}

func (o *observer) signal(s engine.Snapshot) {
	if srv := o.srv.Load(); srv != nil {
		_ = srv.Emit(toStatus(s))
	}
}
