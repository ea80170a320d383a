package engine

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/abupdate/update_engine/internal/prefs"
	"github.com/abupdate/update_engine/internal/status"
)

type attemptInput struct {
	interactive bool
	server      string // per-attempt override, "" = configured
	serverURL   string // the effective URL, for the TestOmahaURL flag
	track       string
}

// attempt runs one update attempt on the worker goroutine and reports the
// outcome to the owner.
func (e *Engine) attempt(ctx context.Context, in attemptInput) {
	var flags status.Code
	if in.serverURL != DefaultServer {
		flags |= status.FlagTestOmahaURL
	}
	res, err := e.runAttempt(ctx, in, &flags)
	if ctx.Err() != nil {
		// Shutdown: leave prefs as they are, the next start resumes.
		return
	}
	if err == nil {
		e.do(ctx, func(st *state) {
			st.busy = false
			st.failures = 0
			st.poll = res.poll
			if res.noUpdate {
				st.snap.Status = status.Idle
				st.snap.LastError = status.Success
				st.snap.LastErrorMessage = ""
			}
			e.arm(st, e.cfg.Schedule.next(e.float(), 0, st.poll))
		})
		return
	}
	code := mapError(err)
	reported := code | flags
	e.log.Error("update attempt failed", "code", reported.String(), "err", err)
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.Error(code)
		if res.checkFailed {
			e.cfg.Metrics.CheckDone(CheckError, e.cfg.Clock.Now())
		}
	}
	e.do(ctx, func(st *state) {
		st.snap.Status = status.ReportingErrorEvent
		st.snap.LastError = reported
		st.snap.LastErrorMessage = err.Error()
	})
	if code.Base() != status.OmahaResponseHandlerError {
		result := 0
		switch code.Base() {
		case status.OmahaUpdateIgnoredPerPolicy, status.OmahaUpdateDeferredPerPolicy, status.OmahaUpdateDeferredForBackoff:
			result = 9
		}
		e.event(ctx, in.server, Event{Type: 3, Result: result, ErrorCode: reported})
	}
	e.do(ctx, func(st *state) {
		st.busy = false
		st.snap.Status = status.Idle
		st.snap.Progress = 0
		if res.checkFailed {
			st.failures++
		}
		st.snap.NewVersion, st.snap.NewSize = "0.0.0", 0
		e.arm(st, e.cfg.Schedule.next(e.float(), st.failures, 0))
	})
}

type attemptResult struct {
	noUpdate    bool
	checkFailed bool
	poll        time.Duration
}

func (e *Engine) event(ctx context.Context, server string, ev Event) {
	if err := e.cfg.Checker.SendEvent(ctx, server, ev); err != nil {
		e.log.Warn("sending Omaha event failed", "type", ev.Type, "result", ev.Result, "err", err)
	}
}

// sendApplied sends the 3/1 (update applied) event and clears the debt.
func (e *Engine) sendApplied(ctx context.Context, server string) {
	e.event(ctx, server, Event{Type: 3, Result: 1})
	if err := e.cfg.Prefs.Delete(KeyAppliedEvent); err != nil && !errors.Is(err, prefs.ErrNotFound) {
		e.log.Warn("cannot clear applied-event-pending", "err", err)
	}
}

// previousVersion returns the previous-version pref for the check:
// "0.0.0.0" before the pref ever existed, "" once cleared. When it equals
// the running version the check reports a rollback (3/0 errorcode=44).
func (e *Engine) previousVersion() string {
	prev, err := e.cfg.Prefs.GetString(KeyPreviousVersion)
	switch {
	case errors.Is(err, prefs.ErrNotFound):
		return "0.0.0.0"
	case err != nil:
		return ""
	}
	if prev != "" && prev == e.cfg.CurrentVersion {
		_ = e.cfg.Prefs.SetString(KeyRollbackVersion, prev)
	}
	return prev
}

// deltaOK is whether to ask for deltas: no delta failed for good since
// the last update.
func (e *Engine) deltaOK() bool {
	n, err := e.cfg.Prefs.GetInt64(KeyDeltaFailures)
	return err != nil || n == 0
}

// deltaFailed counts a delta payload that failed in a way retrying will
// not mend (a source that does not match, a bad patch, a hash): the next
// check asks for the full payload.
func (e *Engine) deltaFailed(plan *Plan, err error) {
	n, _ := e.cfg.Prefs.GetInt64(KeyDeltaFailures)
	if perr := e.cfg.Prefs.SetInt64(KeyDeltaFailures, n+1); perr != nil {
		e.log.Warn("cannot count the delta failure", "err", perr)
	}
	e.log.Warn("delta payload failed; the next check asks for the full payload", "version", plan.Version, "err", err)
}

func (e *Engine) runAttempt(ctx context.Context, in attemptInput, flags *status.Code) (res attemptResult, err error) {
	src := "scheduler"
	if in.interactive {
		src = "ondemandupdate"
	}
	plan, err := e.cfg.Checker.Check(ctx, CheckRequest{InstallSource: src, Track: in.track, Server: in.server,
		PreviousVersion: e.previousVersion(), DeltaOK: e.deltaOK()})
	if err != nil {
		res.checkFailed = true
		return res, fmt.Errorf("update check: %w", err)
	}
	if plan != nil && plan.Delta {
		defer func() {
			if err != nil && !resumable(err) {
				e.deltaFailed(plan, err)
			}
		}()
	}
	// The piggybacked event was delivered: clear previous-version.
	_ = e.cfg.Prefs.SetString(KeyPreviousVersion, "")
	now := e.cfg.Clock.Now()
	e.do(ctx, func(st *state) { st.snap.LastChecked = now.Unix() })
	if plan == nil {
		if e.cfg.Metrics != nil {
			e.cfg.Metrics.CheckDone(CheckNoUpdate, now)
		}
		res.noUpdate = true
		e.log.Info("no update available")
		return res, nil
	}
	res.poll = plan.PollInterval
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.CheckDone(CheckUpdateAvailable, now)
	}
	e.log.Info("update available", "version", plan.Version, "size", plan.Size, "urls", len(plan.URLs))
	if e.cfg.Floor != nil {
		if err := e.cfg.Floor.Check(ctx, plan.Version); err != nil {
			return res, status.WithCode(status.OmahaUpdateIgnoredPerPolicy, fmt.Errorf("version %s refused by the anti-rollback floor: %w", plan.Version, err))
		}
	}
	if plan.Size <= 0 || len(plan.SHA256) != 32 || len(plan.URLs) == 0 {
		return res, status.WithCode(status.OmahaResponseInvalid, errors.New("engine: the plan lacks a size, a SHA-256 or a URL"))
	}
	e.do(ctx, func(st *state) {
		st.snap.Status = status.UpdateAvailable
		st.snap.NewVersion = plan.Version
		st.snap.NewSize = plan.Size
		st.snap.LastError = status.Success
		st.snap.LastErrorMessage = ""
	})

	if err := e.cfg.Prefs.SetString(KeyStep, "downloading"); err != nil {
		return res, status.WithCode(status.DownloadStateInitializationError, err)
	}
	e.event(ctx, in.server, Event{Type: 13, Result: 1})
	e.do(ctx, func(st *state) { st.snap.Status = status.Downloading })
	applied, err := e.download(ctx, plan, flags)
	if err != nil {
		return res, err
	}

	e.do(ctx, func(st *state) { st.snap.Status = status.Verifying; st.snap.Progress = 1 })
	e.event(ctx, in.server, Event{Type: 14, Result: 1})
	if applied.Size != plan.Size {
		_ = e.clearDownload()
		return res, status.WithCode(status.PayloadSizeMismatchError, fmt.Errorf("%w: got %d bytes, Omaha said %d", ErrSizeMismatch, applied.Size, plan.Size))
	}
	if !bytes.Equal(applied.SHA256, plan.SHA256) {
		_ = e.clearDownload()
		return res, status.WithCode(status.PayloadHashMismatchError, fmt.Errorf("%w: got %s, Omaha said %s", ErrHashMismatch,
			base64.StdEncoding.EncodeToString(applied.SHA256), base64.StdEncoding.EncodeToString(plan.SHA256)))
	}

	// Verified. Finalize: post-install, then the flip (flatcar-postinst
	// flips last, so a failing post-install leaves the GPT untouched).
	if err := e.cfg.Prefs.SetString(KeyStep, "finalizing"); err != nil {
		return res, status.WithCode(status.DownloadStateInitializationError, err)
	}
	e.do(ctx, func(st *state) { st.snap.Status = status.Finalizing })
	if e.cfg.Postinst != nil {
		if err := e.cfg.Postinst.Run(ctx, e.cfg.Slots.PassiveDevice(), plan); err != nil {
			if status.CodeOf(err).Base() != status.PostinstallBootedFromFirmwareB {
				_ = e.clearDownload()
				return res, err
			}
			e.log.Warn("post-install reported code 19; treating as success", "err", err)
		}
	}
	if err := e.cfg.Slots.MarkPassiveForTrial(ctx); err != nil {
		_ = e.clearDownload()
		return res, fmt.Errorf("flip to slot %s: %w", e.cfg.Slots.Passive(), err)
	}
	_ = e.cfg.Prefs.SetInt64(KeyFlipTime, e.cfg.Clock.Now().Unix())
	// Owed until sent: a kill from here on restarts into
	// UPDATED_NEED_REBOOT, and the restart sends it (sendOwedApplied).
	_ = e.cfg.Prefs.SetString(KeyAppliedEvent, in.server)
	if err := e.cfg.Prefs.Delete(KeyDeltaFailures); err != nil && !errors.Is(err, prefs.ErrNotFound) {
		e.log.Warn("cannot clear delta-update-failures", "err", err)
	}
	if m, ok := e.cfg.Floor.(Measurer); ok && len(applied.PartitionHash) == 32 {
		if rec, err := m.Measure(ctx, applied.PartitionHash); err != nil {
			e.log.Warn("measuring the new image into the TPM failed", "err", err)
		} else if rec != nil {
			_ = e.cfg.Prefs.Set(KeyPCRRecord, rec)
		}
	}
	if err := e.cfg.Prefs.SetString(KeyPreviousVersion, e.cfg.CurrentVersion); err != nil {
		e.log.Warn("cannot store previous-version", "err", err)
	}
	if e.cfg.RebootRequiredPath != "" {
		if err := touch(e.cfg.RebootRequiredPath, ""); err != nil {
			e.log.Warn("cannot write reboot-required", "path", e.cfg.RebootRequiredPath, "err", err)
		}
	}
	if e.cfg.MarkerPath != "" {
		if err := touch(e.cfg.MarkerPath, markerBody(plan.Version, plan.Size, e.bootedSlot())); err != nil {
			e.log.Warn("cannot write the update-completed marker", "path", e.cfg.MarkerPath, "err", err)
		}
	}
	if err := e.clearDownload(); err != nil {
		e.log.Warn("cannot clear download state", "err", err)
	}
	e.sendApplied(ctx, in.server)
	e.do(ctx, func(st *state) {
		st.snap.Status = status.UpdatedNeedReboot
		st.snap.Progress = 0
		e.refreshSlots(ctx, &st.snap)
	})
	e.log.Info("update applied; reboot needed", "version", plan.Version, "slot", e.cfg.Slots.Passive())
	return res, nil
}

// touch writes body to path atomically, creating the directory.
func touch(path, body string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// download streams the payload into the passive slot, resuming from the
// persisted checkpoint when the same payload is offered again.
func (e *Engine) download(ctx context.Context, plan *Plan, flags *status.Code) (Applied, error) {
	sha := base64.StdEncoding.EncodeToString(plan.SHA256)
	var from *Checkpoint
	resumes := int64(0)
	if stored, err := e.cfg.Prefs.GetString(KeyResponseHash); err == nil && stored == sha {
		if cp, ok := e.loadCheckpoint(); ok && cp.Offset > 0 && cp.Offset < plan.Size {
			n, _ := e.cfg.Prefs.GetInt64(KeyResumes)
			if n < int64(e.cfg.MaxResumes) {
				from, resumes = cp, n+1
			} else {
				e.log.Warn("payload resumed too often; starting over", "resumes", n)
			}
		}
	}
	if from == nil {
		if err := e.clearDownload(); err != nil {
			return Applied{}, status.WithCode(status.DownloadStateInitializationError, err)
		}
		if err := e.cfg.Prefs.SetString(KeyStep, "downloading"); err != nil {
			return Applied{}, status.WithCode(status.DownloadStateInitializationError, err)
		}
		if err := e.cfg.Prefs.SetString(KeyResponseHash, sha); err != nil {
			return Applied{}, status.WithCode(status.DownloadStateInitializationError, err)
		}
	} else {
		if err := e.cfg.Prefs.SetInt64(KeyResumes, resumes); err != nil {
			return Applied{}, status.WithCode(status.DownloadStateInitializationError, err)
		}
		*flags |= status.FlagResumed
		if e.cfg.Metrics != nil {
			e.cfg.Metrics.Resumed()
		}
		e.log.Info("resuming download", "offset", from.Offset, "resume", resumes)
	}
	e.do(ctx, func(st *state) { st.snap.Resumes = int(resumes) })

	if d, ok := e.cfg.Slots.(passiveDisabler); ok {
		if err := d.MarkPassiveUnbootable(ctx); err != nil {
			return Applied{}, withDefault(status.InstallDeviceOpenError, fmt.Errorf("disable passive slot %s before writing: %w", e.cfg.Slots.Passive(), err))
		}
	}
	dst, err := e.cfg.Slots.OpenPassive(ctx)
	if err != nil {
		return Applied{}, withDefault(status.InstallDeviceOpenError, fmt.Errorf("open passive slot %s: %w", e.cfg.Slots.Passive(), err))
	}
	defer dst.Close()
	if e.cfg.Metrics != nil {
		dst = &countingTarget{Target: dst, m: e.cfg.Metrics}
	}
	src, srcCloser, err := e.cfg.Slots.Active()
	if err != nil {
		return Applied{}, withDefault(status.InstallDeviceOpenError, fmt.Errorf("open active slot %s: %w", e.cfg.Slots.Booted(), err))
	}
	defer srcCloser.Close()

	var offset int64
	if from != nil {
		offset = from.Offset
	}
	body, err := e.cfg.Downloader.Open(ctx, plan, offset)
	if err != nil {
		if from != nil && rangeRefused(err) {
			e.log.Warn("server refused the resume range; the next attempt starts over", "err", err)
			_ = e.clearDownload()
		}
		return Applied{}, status.WithCode(status.DownloadTransferError, fmt.Errorf("download: %w", err))
	}
	defer body.Close()

	pr := &progressReader{e: e, ctx: ctx, r: body, done: offset, total: plan.Size}
	started := e.cfg.Clock.Now()
	applied, err := e.cfg.Applier.Apply(ctx, plan, pr, src, dst, from, e.saveCheckpoint)
	if err != nil {
		if pr.err != nil && ctx.Err() == nil {
			// The body broke off: keep the checkpoint for a resume.
			return Applied{}, status.WithCode(status.DownloadTransferError, fmt.Errorf("download: %w", err))
		}
		if !resumable(err) {
			_ = e.clearDownload()
		}
		return Applied{}, fmt.Errorf("apply: %w", err)
	}
	if err := dst.Sync(); err != nil {
		return Applied{}, status.WithCode(status.DownloadWriteError, fmt.Errorf("sync passive slot: %w", err))
	}
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.ObserveApply(pr.done-offset, e.cfg.Clock.Now().Sub(started))
	}
	return applied, nil
}

// progressReader counts payload bytes and reports progress to the owner
// in steps of 0.1 %.
type progressReader struct {
	e           *Engine
	ctx         context.Context
	r           io.Reader
	done, total int64
	sent        float64
	err         error // the body's own read error, to tell transfer from apply failures
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if err != nil && err != io.EOF {
		p.err = err
	}
	if n > 0 {
		p.done += int64(n)
		if p.e.cfg.Metrics != nil {
			p.e.cfg.Metrics.AddDownloaded(int64(n))
		}
		frac := min(float64(p.done)/float64(p.total), 1)
		if frac-p.sent >= 0.001 || frac >= 1 {
			p.sent = frac
			done := p.done
			p.e.do(p.ctx, func(st *state) { st.snap.Progress = frac; st.snap.BytesDownloaded = done })
		}
	}
	return n, err
}

// countingTarget counts bytes written to the passive slot; it keeps the
// wrapped target's Direct() answer visible to the applier.
type countingTarget struct {
	Target
	m Metrics
}

func (c *countingTarget) WriteAt(p []byte, off int64) (int, error) {
	n, err := c.Target.WriteAt(p, off)
	c.m.AddWritten(int64(n))
	return n, err
}

func (c *countingTarget) Direct() bool {
	d, ok := c.Target.(directer)
	return ok && d.Direct()
}
