package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/update1"
)

// state is owned by the Run goroutine; nothing else touches it.
type state struct {
	snap     Snapshot
	busy     bool // an attempt (or ping) worker is running
	checkAt  <-chan time.Time
	interval time.Duration // unfuzzed interval last scheduled (FUE last_interval_), doubled by backoff
	poll     time.Duration // server PollInterval of the last check's answer

	emitted     Snapshot  // last snapshot sent to the Observer
	emittedAt   time.Time // when
	emittedOnce bool
}

// Run owns the state until ctx ends. It returns ctx's error after the
// worker stopped. Call it once.
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("engine: Run called twice")
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()

	st := &state{snap: e.Snapshot()}
	rp, err := e.restore(ctx, st)
	if err != nil {
		close(e.ready)
		return err
	}
	e.publish(st, true)
	close(e.ready)

	first, interval := e.cfg.Schedule.first(e.float())
	st.interval = interval
	if rp.Resume {
		first = e.cfg.Schedule.ResumeDelay
		e.log.Info("an interrupted update was found; checking again soon", "in", first)
	}
	e.arm(st, first)
	if rp.SendApplied {
		// Killed between the flip and the 3/1 event: send it now.
		server := rp.Record.Update.Server
		wg.Add(1)
		go func() { defer wg.Done(); e.sendApplied(wctx, server) }()
	}
	if rp.Finish {
		e.startFinish(wctx, &wg, st)
		e.publish(st, false) // FINALIZING before the worker moves on
	}
	if !e.cfg.Health.Disabled && (e.cfg.BootID == "" || rp.Record.GoodBoot != e.cfg.BootID) {
		wg.Add(1)
		go func() { defer wg.Done(); e.bootGate(wctx) }()
	}

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-e.reqs:
			err := e.handle(wctx, &wg, st, r)
			// Publish before answering, so the caller's next GetStatus
			// sees the effect.
			e.publish(st, false)
			r.reply <- err
		case f := <-e.mutate:
			f(st)
		case <-st.checkAt:
			st.checkAt = nil
			e.scheduled(wctx, &wg, st)
		}
		e.publish(st, false)
	}
}

// restore reads the record (migrating an older layout once), decides
// what the restart does (decideRestart), stores the decision and sets the
// snapshot from it. It fails only when the record or the GPT cannot be
// read or the decision cannot be stored: then nothing is safe to do.
func (e *Engine) restore(ctx context.Context, st *state) (restartPlan, error) {
	if ch, err := e.cfg.Prefs.GetString(KeyChannel); err == nil && validChannel(ch) {
		st.snap.Channel = ch
	}
	if err := e.cfg.Postinst.Cleanup(e.cfg.Slots.PassiveDevice()); err != nil {
		e.log.Warn("cleaning up after an earlier post-install", "err", err)
	}
	attrs, err := e.cfg.Slots.Attrs(ctx)
	if err != nil {
		return restartPlan{}, fmt.Errorf("engine: read the slots' GPT attributes: %w", err)
	}
	h := host{Booted: e.cfg.Slots.Booted(), BootID: e.cfg.BootID, Version: e.cfg.CurrentVersion, Attrs: attrs}
	rec, found, err := loadRecord(e.cfg.Prefs)
	if err != nil {
		return restartPlan{}, err
	}
	migrated := false
	if !found {
		rec, migrated = e.migrateLegacy(h, e.cfg.Slots.Passive())
	}
	rp := decideRestart(rec, h)
	e.log.Info("restart", "decision", rp.Why, "status", rp.Status, "finish", rp.Finish, "resume", rp.Resume)
	e.recMu.Lock()
	e.rec = rec
	if migrated || !reflect.DeepEqual(rp.Record, rec) {
		err = e.changeLocked(func(r *Record) { *r = rp.Record })
	}
	e.recMu.Unlock()
	if err != nil {
		return restartPlan{}, err
	}
	if migrated {
		e.log.Info("update state moved from the old prefs layout into the record", "key", KeyRecord)
		e.dropLegacy()
	}
	if rp.Record.Update == nil && e.cfg.MarkerPath != "" {
		if err := os.Remove(e.cfg.MarkerPath); err == nil {
			e.log.Info("removed a stale update-completed marker", "path", e.cfg.MarkerPath)
		}
	}
	if u := rp.Record.Update; rp.Status == update1.UpdatedNeedReboot {
		st.snap.Status = update1.UpdatedNeedReboot
		st.snap.NewVersion, st.snap.NewSize = cmp.Or(u.ToVersion, "0.0.0"), u.Size
		e.writeMarkers(u)
	}
	if r := rp.Record.Report; r != nil && r.Rollback {
		st.snap.LastError = omaha.RollbackError
		st.snap.LastErrorMessage = "the machine came back on version " + r.FromVersion + " after an update"
		e.log.Warn("rollback detected: the updated slot did not boot", "version", r.FromVersion, "to", r.ToVersion)
		e.observe(Failed{Code: omaha.RollbackError})
	}
	e.refreshSlots(ctx, &st.snap)
	return rp, nil
}

func (e *Engine) refreshSlots(ctx context.Context, s *Snapshot) {
	s.BootedSlot = e.cfg.Slots.Booted()
	if n, err := e.cfg.Slots.NextBoot(ctx); err == nil {
		s.NextBootSlot = n
	}
	if ok, err := e.cfg.Slots.CanRollback(ctx); err == nil {
		s.CanRollback = ok && s.Status != update1.UpdatedNeedReboot
	}
}

// marker file body: "NEW_VERSION=…\nNEW_SIZE=…\nBOOTED_SLOT=…\n"; the
// slot booted when the update was applied tells a stale marker (a run
// directory that outlived a reboot) from a pending one.
func markerBody(version string, size int64, booted string) string {
	return "NEW_VERSION=" + version + "\nNEW_SIZE=" + strconv.FormatInt(size, 10) + "\nBOOTED_SLOT=" + booted + "\n"
}

func parseMarker(s string) (v string, n int64, booted string) {
	for _, l := range strings.Split(s, "\n") {
		k, val, _ := strings.Cut(l, "=")
		switch k {
		case "NEW_VERSION":
			v = val
		case "NEW_SIZE":
			n, _ = strconv.ParseInt(val, 10, 64)
		case "BOOTED_SLOT":
			booted = val
		}
	}
	return v, n, booted
}

func (e *Engine) arm(st *state, d time.Duration) {
	if e.cfg.Schedule.Disabled {
		st.checkAt = nil
		return
	}
	st.checkAt = e.cfg.Clock.After(d)
}

// armNext arms the next check by the Schedule's rules; backoff says the
// check that just ended failed with HTTP 500 or 503 (omaha.Backoff).
func (e *Engine) armNext(st *state, backoff bool) {
	d, interval := e.cfg.Schedule.next(e.float(), st.interval, st.poll, backoff)
	st.interval = interval
	e.arm(st, d)
}

// handle answers one D-Bus request.
func (e *Engine) handle(ctx context.Context, wg *sync.WaitGroup, st *state, r request) error {
	switch r.kind {
	case reqAttempt:
		if st.busy || st.snap.Status != update1.Idle {
			e.log.Info("AttemptUpdate ignored: not idle", "status", st.snap.Status)
			return nil
		}
		server := ""
		if r.omahaURL != "" && e.cfg.AllowOmahaURL {
			server = r.omahaURL
		}
		if server == "" && e.disabled(st) {
			e.log.Info("AttemptUpdate ignored: updates are disabled (SERVER=disabled in update.conf)")
			return nil
		}
		e.start(ctx, wg, st, true, server)
		return nil
	case reqReset:
		switch {
		case st.busy:
			return ErrBusy
		case st.snap.Status == update1.Idle:
			return nil
		case st.snap.Status == update1.UpdatedNeedReboot:
			// The engine forgets the update; the GPT is left as it is
			// (Flatcar), so a reboot still boots the new slot.
			if err := e.change(func(r *Record) { r.Update = nil }); err != nil {
				return err
			}
			if e.cfg.MarkerPath != "" {
				if err := os.Remove(e.cfg.MarkerPath); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
			st.snap.Status = update1.Idle
			st.snap.NewVersion = "0.0.0"
			st.snap.NewSize = 0
			st.snap.Progress = 0
			return nil
		}
		return ErrBusy
	case reqRollback:
		if st.busy || st.snap.Status != update1.Idle {
			return ErrNotIdle
		}
		ok, err := e.cfg.Slots.CanRollback(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNoRollback
		}
		e.recMu.Lock()
		err = e.cfg.Slots.RollbackToPassive(ctx)
		e.recMu.Unlock()
		if err != nil {
			return err
		}
		e.log.Info("rollback requested: the passive slot boots next", "slot", e.cfg.Slots.Passive(), "powerwash", r.powerwash)
		e.refreshSlots(ctx, &st.snap)
		return nil
	case reqChannel:
		if err := e.cfg.Prefs.SetString(KeyChannel, r.channel); err != nil {
			return err
		}
		st.snap.Channel = r.channel
		return nil
	}
	return errors.New("engine: unknown request")
}

// scheduled runs a timer check: a full check when idle, a ping while a
// reboot is pending, nothing while busy.
func (e *Engine) scheduled(ctx context.Context, wg *sync.WaitGroup, st *state) {
	switch {
	case st.busy:
		e.armNext(st, false)
	case st.snap.Status == update1.UpdatedNeedReboot:
		st.busy = true
		e.refresh(st)
		track, server := st.snap.Channel, ""
		if st.snap.Server != e.cfg.Server {
			server = st.snap.Server
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.cfg.Checker.Check(ctx, CheckRequest{InstallSource: "scheduler", Track: track, Server: server, PingOnly: true})
			if err != nil {
				e.log.Info("ping failed", "err", err)
			}
			e.do(ctx, func(st *state) {
				st.busy = false
				e.armNext(st, false)
			})
		}()
	case st.snap.Status == update1.Idle && e.disabled(st):
		// No request, no error, no backoff: check again at the usual
		// interval, when SERVER may have been set again.
		e.armNext(st, false)
	case st.snap.Status == update1.Idle:
		e.start(ctx, wg, st, false, "")
	default:
		e.armNext(st, false)
	}
}

// refresh re-reads GROUP and SERVER (Config.Settings) into the snapshot;
// a SetChannel choice beats GROUP.
func (e *Engine) refresh(st *state) {
	if e.cfg.Settings == nil {
		return
	}
	s, err := e.cfg.Settings()
	if err != nil {
		e.log.Warn("re-reading the configuration failed; keeping the previous values", "err", err)
		return
	}
	if s.Server != "" {
		st.snap.Server = s.Server
	}
	if s.Track != "" {
		if ch, err := e.cfg.Prefs.GetString(KeyChannel); err != nil || !validChannel(ch) {
			st.snap.Channel = s.Track
		}
	}
}

// disabled re-reads the settings and reports whether SERVER=disabled
// (Flatcar's way to turn updates off, written by flatcar-update): no
// checks at all, while the health gate and D-Bus go on.
func (e *Engine) disabled(st *state) bool {
	e.refresh(st)
	return st.snap.Server == ServerDisabled
}

// start moves to CHECKING_FOR_UPDATE and starts the attempt worker.
func (e *Engine) start(ctx context.Context, wg *sync.WaitGroup, st *state, interactive bool, server string) {
	e.refresh(st)
	st.busy = true
	st.checkAt = nil
	st.snap.Status = update1.CheckingForUpdate
	st.snap.Progress = 0
	if server == "" && st.snap.Server != e.cfg.Server {
		server = st.snap.Server
	}
	in := attemptInput{interactive: interactive, server: server, track: st.snap.Channel, serverURL: st.snap.Server}
	if server != "" {
		in.serverURL = server
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.attempt(ctx, in)
	}()
}

// do sends f to the owner; it gives up when ctx ends (shutdown).
func (e *Engine) do(ctx context.Context, f func(*state)) {
	select {
	case e.mutate <- f:
	case <-ctx.Done():
	}
}

// publish stores the snapshot and tells the Observer on a status change,
// a progress step of at least 1 %, 10 s since the last signal during a
// download, or the end of the download. force sends regardless.
func (e *Engine) publish(st *state, force bool) {
	s := st.snap
	if prev := e.snap.Load(); st.emittedOnce {
		if err := checkTransition(prev.Status, s.Status); err != nil {
			e.log.Error("bug", "err", err)
			illegalTransition(err)
		}
	}
	e.snap.Store(&s)
	now := e.cfg.Clock.Now()
	send := force || !st.emittedOnce
	if !send {
		prev := st.emitted
		switch {
		case s.Status != prev.Status, s.NewVersion != prev.NewVersion, s.NewSize != prev.NewSize, s.LastChecked != prev.LastChecked:
			send = true
		case s.Progress != prev.Progress && (s.Progress-prev.Progress >= 0.01 || prev.Progress-s.Progress >= 0.01 || s.Progress >= 1 || now.Sub(st.emittedAt) >= 10*time.Second):
			send = true
		}
	}
	if !send {
		return
	}
	st.emitted, st.emittedAt, st.emittedOnce = s, now, true
	e.observe(StatusChanged{s})
}

// transitions lists the legal status changes (SPEC.md 1a); FINALIZING
// follows IDLE when a restart finishes a verified update.
var transitions = map[update1.Op][]update1.Op{
	update1.Idle:                {update1.CheckingForUpdate, update1.Finalizing},
	update1.CheckingForUpdate:   {update1.Idle, update1.UpdateAvailable, update1.ReportingErrorEvent},
	update1.UpdateAvailable:     {update1.Downloading, update1.ReportingErrorEvent},
	update1.Downloading:         {update1.Verifying, update1.ReportingErrorEvent},
	update1.Verifying:           {update1.Finalizing, update1.ReportingErrorEvent},
	update1.Finalizing:          {update1.UpdatedNeedReboot, update1.ReportingErrorEvent},
	update1.UpdatedNeedReboot:   {update1.Idle},
	update1.ReportingErrorEvent: {update1.Idle},
}

// illegalTransition hears every illegal status change; the engine's tests
// make it fatal.
var illegalTransition = func(error) {}

// ErrIllegalTransition is a status change the table does not allow.
var ErrIllegalTransition = errors.New("engine: illegal status transition")

func checkTransition(from, to update1.Op) error {
	if from == to || slices.Contains(transitions[from], to) {
		return nil
	}
	return fmt.Errorf("%w: %v → %v", ErrIllegalTransition, from, to)
}
