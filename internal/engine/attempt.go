package engine

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/abupdate/update_engine/internal/crashpoint"
	"github.com/abupdate/update_engine/internal/prefs"
	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/internal/update"
	"github.com/abupdate/update_engine/pkg/atomicfile"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/update1"
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
	var flags omaha.Code
	if in.serverURL != DefaultServer {
		flags |= omaha.FlagTestOmahaURL
	}
	res, err := e.runAttempt(ctx, in, &flags)
	e.conclude(ctx, in, flags, res, err)
}

// startFinish moves to FINALIZING and finishes the verified update the
// record holds (a restart after a kill between verification and the flip).
func (e *Engine) startFinish(ctx context.Context, wg *sync.WaitGroup, st *state) {
	u := e.record().Update
	st.busy = true
	st.snap.Status = update1.Finalizing
	st.snap.NewVersion, st.snap.NewSize = u.ToVersion, u.Size
	in := attemptInput{server: u.Server, serverURL: cmp.Or(u.Server, e.cfg.Server)}
	var flags omaha.Code
	if in.serverURL != DefaultServer {
		flags |= omaha.FlagTestOmahaURL
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.conclude(ctx, in, flags, attemptResult{}, e.finalize(ctx, nil))
	}()
}

// conclude reports an attempt's outcome to the owner (and the server).
func (e *Engine) conclude(ctx context.Context, in attemptInput, flags omaha.Code, res attemptResult, err error) {
	if ctx.Err() != nil {
		// Shutdown: leave prefs as they are, the next start resumes.
		return
	}
	if err == nil {
		e.do(ctx, func(st *state) {
			st.busy = false
			st.poll = res.poll
			if res.noUpdate {
				st.snap.Status = update1.Idle
				st.snap.LastError = omaha.Success
				st.snap.LastErrorMessage = ""
			}
			e.armNext(st, false)
		})
		return
	}
	code := mapError(err)
	reported := code | flags
	e.log.Error("update attempt failed", "code", reported.String(), "err", err)
	e.observe(Failed{Code: code})
	if res.checkFailed {
		e.observe(CheckDone{Result: update.CheckError, At: e.cfg.Clock.Now()})
	}
	e.do(ctx, func(st *state) {
		st.snap.Status = update1.ReportingErrorEvent
		st.snap.LastError = reported
		st.snap.LastErrorMessage = err.Error()
	})
	if code.Base() != omaha.OmahaResponseHandlerError {
		e.event(ctx, in.server, update.FailureEvent(reported))
	}
	e.do(ctx, func(st *state) {
		st.busy = false
		st.snap.Status = update1.Idle
		st.snap.Progress = 0
		st.snap.NewVersion, st.snap.NewSize = "0.0.0", 0
		// A failed check has no answer, hence no PollInterval; a failure
		// after the check keeps the check's.
		st.poll = res.poll
		e.armNext(st, res.checkFailed && omaha.Backoff(err))
	})
}

type attemptResult struct {
	noUpdate    bool
	checkFailed bool
	poll        time.Duration
}

func (e *Engine) event(ctx context.Context, server string, ev update.Event) {
	if err := e.cfg.Checker.SendEvent(ctx, server, ev); err != nil {
		e.log.Warn("sending Omaha event failed", "type", ev.Type, "result", ev.Result, "err", err)
	}
}

// sendApplied clears the 3/1 (update applied) debt, then sends the
// event: at most once, so a restart never reports the update twice (a
// kill during the request loses it; the 3/2 after the reboot still
// reports the update).
func (e *Engine) sendApplied(ctx context.Context, server string) {
	if err := e.changeUpdate(func(u *Update) { u.AppliedOwed = false }); err != nil {
		e.log.Warn("cannot record the 3/1 event as sent; not sending it", "err", err)
		return
	}
	e.event(ctx, server, update.EventUpdateApplied)
}

// previousVersion is what the check reports about the last update: the
// version updated from when the record holds an outcome (the check then
// carries 3/2 previousversion=<it>, or 3/0 errorcode=44 when the machine
// still runs it); "0.0.0.0" on a machine that never updated (Flatcar);
// "" otherwise.
func (e *Engine) previousVersion() string {
	if r := e.record().Report; r != nil {
		return r.FromVersion
	}
	if _, err := e.cfg.Prefs.GetString(KeyPreviousVersion); errors.Is(err, prefs.ErrNotFound) {
		return "0.0.0.0"
	}
	return ""
}

// reported forgets the outcome once a check delivered it.
func (e *Engine) reported() {
	if e.record().Report != nil {
		if err := e.change(func(r *Record) { r.Report = nil }); err != nil {
			e.log.Warn("cannot clear the reported outcome", "err", err)
		}
	}
	if err := e.cfg.Prefs.SetString(KeyPreviousVersion, ""); err != nil {
		e.log.Warn("cannot clear previous-version", "err", err)
	}
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

// runAttempt is one attempt's steps: check, accept the offer, download
// and verify it into the passive slot, finalize (post-install and flip).
func (e *Engine) runAttempt(ctx context.Context, in attemptInput, flags *omaha.Code) (res attemptResult, err error) {
	plan, err := e.check(ctx, in)
	if err != nil {
		res.checkFailed = true
		return res, err
	}
	if plan != nil {
		res.poll = plan.PollInterval
	}
	if plan == nil || plan.NoUpdate {
		res.noUpdate = true
		return res, nil
	}
	if plan.Delta {
		defer func() {
			if err != nil && !resumable(err) {
				e.deltaFailed(plan, err)
			}
		}()
	}
	if err := e.accept(ctx, plan); err != nil {
		return res, err
	}
	partitionHash, err := e.downloadVerified(ctx, plan, in.server, flags)
	if err != nil {
		return res, err
	}
	e.do(ctx, func(st *state) { st.snap.Status = update1.Finalizing })
	return res, e.finalize(ctx, partitionHash)
}

// check asks Omaha for an update and records the check: the plan, or nil
// or a NoUpdate plan (with the answer's PollInterval) when there is none.
func (e *Engine) check(ctx context.Context, in attemptInput) (*Plan, error) {
	src := "scheduler"
	if in.interactive {
		src = "ondemandupdate"
	}
	plan, err := e.cfg.Checker.Check(ctx, CheckRequest{InstallSource: src, Track: in.track, Server: in.server,
		PreviousVersion: e.previousVersion(), DeltaOK: e.deltaOK()})
	if err != nil {
		return nil, fmt.Errorf("update check: %w", err)
	}
	// The piggybacked event was delivered.
	e.reported()
	now := e.cfg.Clock.Now()
	e.do(ctx, func(st *state) { st.snap.LastChecked = now.Unix() })
	if plan == nil || plan.NoUpdate {
		e.observe(CheckDone{Result: update.CheckNoUpdate, At: now})
		e.log.Info("no update available")
		return plan, nil
	}
	e.observe(CheckDone{Result: update.CheckUpdateAvailable, At: now})
	e.log.Info("update available", "version", plan.Version, "size", plan.Size, "urls", len(plan.URLs))
	return plan, nil
}

// accept refuses an offer below the anti-rollback floor, one that lacks
// what verifying it needs, or any while no payload could be verified;
// else it moves to UPDATE_AVAILABLE.
func (e *Engine) accept(ctx context.Context, plan *Plan) error {
	if e.cfg.Floor != nil {
		if err := e.cfg.Floor.Check(ctx, plan.Version); err != nil {
			return status.WithCode(omaha.OmahaUpdateIgnoredPerPolicy, fmt.Errorf("version %s refused by the anti-rollback floor: %w", plan.Version, err))
		}
	}
	if plan.Size <= 0 || len(plan.SHA256) != 32 || len(plan.URLs) == 0 {
		return status.WithCode(omaha.OmahaResponseInvalid, errors.New("engine: the plan lacks a size, a SHA-256 or a URL"))
	}
	if err := e.cfg.Applier.Ready(); err != nil {
		return fmt.Errorf("refusing version %s before downloading it: %w", plan.Version, err)
	}
	e.do(ctx, func(st *state) {
		st.snap.Status = update1.UpdateAvailable
		st.snap.NewVersion = plan.Version
		st.snap.NewSize = plan.Size
		st.snap.LastError = omaha.Success
		st.snap.LastErrorMessage = ""
	})
	return nil
}

// downloadVerified downloads and applies the payload (DOWNLOADING), checks
// it against Omaha's size and SHA-256 (VERIFYING), installs its files and
// records it verified. It returns the new partition's verified hash.
func (e *Engine) downloadVerified(ctx context.Context, plan *Plan, server string, flags *omaha.Code) ([]byte, error) {
	e.event(ctx, server, update.EventDownloadStarted)
	e.do(ctx, func(st *state) { st.snap.Status = update1.Downloading })
	files := newFileSet(e.cfg.Procedures, e.cfg.Slots.Passive())
	defer files.close(true) // what install did not rename
	applied, err := e.download(ctx, plan, server, files, flags)
	if err != nil {
		return nil, err
	}
	e.do(ctx, func(st *state) { st.snap.Status = update1.Verifying; st.snap.Progress = 1 })
	e.event(ctx, server, update.EventDownloadFinished)
	if err := matchPlan(applied, plan); err != nil {
		e.dropUpdate()
		return nil, err
	}
	// The whole payload verified: its files (the kernel, the PCR policy)
	// replace the target slot's. A kill before the record below resumes
	// the download from before the files and installs them again.
	installed, err := files.install(applied.Files)
	if err != nil {
		if !resumable(err) {
			e.dropUpdate()
		}
		return nil, err
	}
	if err := e.changeUpdate(func(u *Update) { u.Phase, u.Checkpoint, u.Files = PhaseVerified, nil, installed }); err != nil {
		return nil, status.WithCode(omaha.DownloadStateInitializationError, err)
	}
	return applied.PartitionHash, nil
}

// matchPlan checks the applied payload against Omaha's size and SHA-256.
func matchPlan(applied Applied, plan *Plan) error {
	if applied.Size != plan.Size {
		return status.WithCode(omaha.PayloadSizeMismatchError, fmt.Errorf("%w: got %d bytes, Omaha said %d", ErrSizeMismatch, applied.Size, plan.Size))
	}
	if !bytes.Equal(applied.SHA256, plan.SHA256) {
		return status.WithCode(omaha.PayloadHashMismatchError, fmt.Errorf("%w: got %s, Omaha said %s", ErrHashMismatch,
			base64.StdEncoding.EncodeToString(applied.SHA256), base64.StdEncoding.EncodeToString(plan.SHA256)))
	}
	return nil
}

// finalize takes a verified update from the record through post-install
// and the flip to UPDATED_NEED_REBOOT (flatcar-postinst flips last, so a
// failing post-install leaves the GPT untouched). A restart that finds a
// verified update runs it again: each step is recorded before it is taken.
func (e *Engine) finalize(ctx context.Context, partitionHash []byte) error {
	u := e.record().Update
	if u == nil {
		return errors.New("engine: finalize without an update in the record")
	}
	plan := &Plan{Version: u.ToVersion, Size: u.Size, SHA256: u.SHA256, Delta: u.Delta, PostinstArgs: postinstArgs(u.Files)}
	if u.Phase == PhaseVerified || u.Phase == PhasePostinst {
		if err := e.changeUpdate(func(u *Update) { u.Phase = PhasePostinst }); err != nil {
			return status.WithCode(omaha.DownloadStateInitializationError, err)
		}
		if err := e.cfg.Procedures.checkFiles(ctx, u.Files); err != nil {
			if ctx.Err() == nil {
				e.dropUpdate() // FUE: a kernel or policy failure fails the update
			}
			return err
		}
		dev := e.cfg.Slots.PassiveDevice()
		if err := e.cfg.Postinst.Cleanup(dev); err != nil {
			e.log.Warn("cleaning up after an earlier post-install", "err", err)
		}
		if err := e.cfg.Postinst.Run(ctx, dev, plan); err != nil {
			if ctx.Err() == nil {
				e.dropUpdate() // Flatcar: a failed post-install fails the update
			}
			return err
		}
	}
	if err := e.flip(ctx); err != nil {
		return err
	}
	if err := e.cfg.Prefs.Delete(KeyDeltaFailures); err != nil && !errors.Is(err, prefs.ErrNotFound) {
		e.log.Warn("cannot clear delta-update-failures", "err", err)
	}
	if e.cfg.Measurer != nil && len(partitionHash) == 32 {
		if rec, err := e.cfg.Measurer.Measure(ctx, partitionHash); err != nil {
			e.log.Warn("measuring the new image into the TPM failed", "err", err)
		} else if rec != nil {
			_ = e.cfg.Prefs.Set(KeyPCRRecord, rec)
		}
	}
	u = e.record().Update
	e.writeMarkers(u)
	e.sendApplied(ctx, u.Server)
	e.do(ctx, func(st *state) {
		st.snap.Status = update1.UpdatedNeedReboot
		st.snap.Progress = 0
		st.snap.NewVersion, st.snap.NewSize = u.ToVersion, u.Size
		e.refreshSlots(ctx, &st.snap)
	})
	e.log.Info("update applied; reboot needed", "version", u.ToVersion, "slot", u.Target)
	return nil
}

// flip makes the target boot next, recorded before (flipping) and after
// (flipped, 3/1 owed) under recMu, so the health gate never runs between.
func (e *Engine) flip(ctx context.Context) error {
	e.recMu.Lock()
	defer e.recMu.Unlock()
	if err := e.changeLocked(func(r *Record) { r.Update.Phase = PhaseFlipping; r.Update.BootID = e.cfg.BootID }); err != nil {
		return status.WithCode(omaha.DownloadStateInitializationError, err)
	}
	if err := e.cfg.Slots.MarkPassiveForTrial(ctx); err != nil {
		// The GPT write failed: the target may or may not boot next;
		// the record stays in flipping and a restart looks at the GPT.
		return fmt.Errorf("flip to slot %s: %w", e.cfg.Slots.Passive(), err)
	}
	now := e.cfg.Clock.Now().Unix()
	if err := e.changeLocked(func(r *Record) {
		r.Update.Phase, r.Update.FlipTime, r.Update.AppliedOwed = PhaseFlipped, now, true
	}); err != nil {
		// Flipped, but not recorded: a restart finds "flipping" and the
		// GPT flipped, and takes it as flipped.
		return status.WithCode(omaha.DownloadStateInitializationError, err)
	}
	return nil
}

// writeMarkers writes what other tools read of a flipped update (derived
// from the record): previous-version, the completion marker, and
// /run/reboot-required.
func (e *Engine) writeMarkers(u *Update) {
	if err := e.cfg.Prefs.SetString(KeyPreviousVersion, u.FromVersion); err != nil {
		e.log.Warn("cannot store previous-version", "err", err)
	}
	if e.cfg.RebootRequiredPath != "" {
		if err := touch(e.cfg.RebootRequiredPath, ""); err != nil {
			e.log.Warn("cannot write reboot-required", "path", e.cfg.RebootRequiredPath, "err", err)
		}
	}
	if e.cfg.MarkerPath != "" {
		if err := touch(e.cfg.MarkerPath, markerBody(u.ToVersion, u.Size, u.Source)); err != nil {
			e.log.Warn("cannot write the update-completed marker", "path", e.cfg.MarkerPath, "err", err)
		}
	}
}

// dropUpdate forgets the update in flight (a failure retrying cannot
// mend). The target stays unbootable.
func (e *Engine) dropUpdate() {
	if err := e.change(func(r *Record) { r.Update = nil }); err != nil {
		e.log.Warn("cannot clear the update record", "err", err)
	}
}

// download streams the payload into the passive slot, resuming from the
// recorded checkpoint when the same payload is offered again.
func (e *Engine) download(ctx context.Context, plan *Plan, server string, files *fileSet, flags *omaha.Code) (Applied, error) {
	from, err := e.recordDownload(ctx, plan, server, flags)
	if err != nil {
		return Applied{}, err
	}
	src, dst, closeSlots, err := e.openSlots(ctx)
	if err != nil {
		return Applied{}, err
	}
	defer closeSlots()
	var offset int64
	if from != nil {
		offset = from.Offset
	}
	body, err := e.cfg.Downloader.Open(ctx, plan, offset)
	if err != nil {
		if from != nil && update.RangeRefused(err) {
			e.log.Warn("server refused the resume range; the next attempt starts over", "err", err)
			e.dropUpdate()
		}
		return Applied{}, status.WithCode(omaha.DownloadTransferError, fmt.Errorf("download: %w", err))
	}
	defer body.Close()
	return e.apply(ctx, plan, body, src, dst, files, from)
}

// recordDownload records the download before the passive slot is
// touched, with the checkpoint to resume from: the recorded one when the
// same payload is offered for the same slot, at most MaxResumes times.
func (e *Engine) recordDownload(ctx context.Context, plan *Plan, server string, flags *omaha.Code) (*Checkpoint, error) {
	var from *Checkpoint
	resumes := 0
	if u := e.record().Update; u != nil && u.Phase == PhaseDownloading && bytes.Equal(u.SHA256, plan.SHA256) &&
		(u.Size == 0 || u.Size == plan.Size) && u.Target == e.cfg.Slots.Passive() &&
		u.Checkpoint != nil && u.Checkpoint.Offset > 0 && u.Checkpoint.Offset < plan.Size {
		if u.Resumes < e.cfg.MaxResumes {
			from, resumes = u.Checkpoint, u.Resumes+1
		} else {
			e.log.Warn("payload resumed too often; starting over", "resumes", u.Resumes)
		}
	}
	err := e.change(func(r *Record) {
		r.Update = &Update{
			Phase: PhaseDownloading, Source: e.cfg.Slots.Booted(), Target: e.cfg.Slots.Passive(), BootID: e.cfg.BootID,
			FromVersion: e.cfg.CurrentVersion, ToVersion: plan.Version, Size: plan.Size, SHA256: plan.SHA256,
			Delta: plan.Delta, Server: server, Checkpoint: from, Resumes: resumes,
		}
	})
	if err != nil {
		return nil, status.WithCode(omaha.DownloadStateInitializationError, err)
	}
	if from != nil {
		*flags |= omaha.FlagResumed
		e.observe(Resumed{})
		e.log.Info("resuming download", "offset", from.Offset, "resume", resumes)
	}
	e.do(ctx, func(st *state) { st.snap.Resumes = resumes })
	return from, nil
}

// openSlots opens the passive slot for writing, marks it unbootable
// before anything is written to it, and opens the booted slot for reading
// (a delta's source). The slot is opened first because the mark writes the
// GPT through the whole disk: when that closes, udev has the kernel re-read
// the partition table, which removes and re-adds the partition nodes of a
// disk none of whose partitions is open. Opened after the mark, the
// passive slot's node was sometimes not there (seen in the vmtest guest);
// held open, it keeps the re-read from happening.
func (e *Engine) openSlots(ctx context.Context) (src io.ReaderAt, dst Target, closeBoth func(), err error) {
	dst, err = e.cfg.Slots.OpenPassive(ctx)
	if err != nil {
		return nil, nil, nil, withDefault(omaha.InstallDeviceOpenError, fmt.Errorf("open passive slot %s: %w", e.cfg.Slots.Passive(), err))
	}
	if err := e.cfg.Slots.MarkPassiveUnbootable(ctx); err != nil {
		dst.Close()
		return nil, nil, nil, withDefault(omaha.InstallDeviceOpenError, fmt.Errorf("disable passive slot %s before writing: %w", e.cfg.Slots.Passive(), err))
	}
	src, srcCloser, err := e.cfg.Slots.Active()
	if err != nil {
		dst.Close()
		return nil, nil, nil, withDefault(omaha.InstallDeviceOpenError, fmt.Errorf("open active slot %s: %w", e.cfg.Slots.Booted(), err))
	}
	if e.cfg.Observer != nil {
		dst = countingTarget{Target: dst, e: e}
	}
	return src, dst, func() { srcCloser.Close(); dst.Close() }, nil
}

// apply feeds the payload body to the applier, from the checkpoint when
// resuming, and syncs the slot. A body that broke off keeps the
// checkpoint; a failure a retry cannot mend drops the update.
func (e *Engine) apply(ctx context.Context, plan *Plan, body io.Reader, src io.ReaderAt, dst Target, files *fileSet, from *Checkpoint) (Applied, error) {
	var offset int64
	if from != nil {
		offset = from.Offset
	}
	pr := &progressReader{e: e, ctx: ctx, r: body, done: offset, total: plan.Size}
	started := e.cfg.Clock.Now()
	applied, err := e.cfg.Applier.Apply(ctx, plan, pr, src, dst, files.Open, from, e.saveCheckpoint)
	if err != nil {
		if pr.err != nil && ctx.Err() == nil {
			// The body broke off: keep the checkpoint for a resume.
			return Applied{}, status.WithCode(omaha.DownloadTransferError, fmt.Errorf("download: %w", err))
		}
		if !resumable(err) {
			e.dropUpdate()
		}
		return Applied{}, fmt.Errorf("apply: %w", err)
	}
	if err := dst.Sync(); err != nil {
		return Applied{}, status.WithCode(omaha.DownloadWriteError, fmt.Errorf("sync passive slot: %w", err))
	}
	e.observe(ApplyDone{Bytes: pr.done - offset, Took: e.cfg.Clock.Now().Sub(started)})
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
		p.e.observe(Downloaded{Bytes: int64(n)})
		frac := min(float64(p.done)/float64(p.total), 1)
		if frac-p.sent >= 0.001 || frac >= 1 {
			p.sent = frac
			done := p.done
			p.e.do(p.ctx, func(st *state) { st.snap.Progress = frac; st.snap.BytesDownloaded = done })
		}
	}
	return n, err
}

// countingTarget reports the bytes written to the passive slot.
type countingTarget struct {
	Target
	e *Engine
}

func (c countingTarget) WriteAt(p []byte, off int64) (int, error) {
	n, err := c.Target.WriteAt(p, off)
	c.e.observe(Written{Bytes: int64(n)})
	return n, err
}

// touch writes body to path atomically, creating the directory.
func touch(path, body string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	crashpoint.Hit("file " + filepath.Base(path))
	return atomicfile.WriteFile(path, []byte(body), 0o644)
}
