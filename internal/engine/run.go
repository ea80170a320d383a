package engine

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/abupdate/update_engine/internal/status"
)

// state is owned by the Run goroutine; nothing else touches it.
type state struct {
	snap     Snapshot
	busy     bool // an attempt (or ping) worker is running
	checkAt  <-chan time.Time
	failures int           // consecutive failed checks, for backoff
	poll     time.Duration // server PollInterval of the last check

	emitted     Snapshot  // last snapshot sent to the Notifier
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
	e.load(ctx, st)
	e.publish(st, true)
	close(e.ready)

	first := e.cfg.Schedule.first(e.float())
	if e.interrupted() {
		first = e.cfg.Schedule.ResumeDelay
		e.log.Info("an interrupted update was found; checking again soon", "in", first)
	}
	e.arm(st, first)

	if server, err := e.cfg.Prefs.GetString(KeyAppliedEvent); err == nil {
		if st.snap.Status == status.UpdatedNeedReboot {
			// Killed between the flip and the 3/1 event: send it now.
			wg.Add(1)
			go func() { defer wg.Done(); e.sendApplied(wctx, server) }()
		} else {
			_ = e.cfg.Prefs.Delete(KeyAppliedEvent) // no update pending any more (rebooted: 3/2 reports it)
		}
	}
	if e.cfg.Slots != nil && !e.cfg.Health.Disabled && st.snap.Status != status.UpdatedNeedReboot {
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

// load restores what survives a restart: the reboot-pending marker, the
// channel, the slot view, a detected rollback.
func (e *Engine) load(ctx context.Context, st *state) {
	if ch, err := e.cfg.Prefs.GetString(KeyChannel); err == nil && validChannel(ch) {
		st.snap.Channel = ch
	}
	if e.cfg.MarkerPath != "" {
		if b, err := os.ReadFile(e.cfg.MarkerPath); err == nil {
			v, size, from := parseMarker(string(b))
			if from != "" && e.cfg.Slots != nil && from != e.cfg.Slots.Booted() {
				// Written before a reboot into the other slot, on a run
				// directory that is not a tmpfs: the reboot happened.
				e.log.Info("stale update-completed marker: rebooted since", "path", e.cfg.MarkerPath, "written_on", from, "booted", e.cfg.Slots.Booted())
				_ = os.Remove(e.cfg.MarkerPath)
			} else {
				st.snap.Status = status.UpdatedNeedReboot
				st.snap.Progress = 0
				if v != "" {
					st.snap.NewVersion = v
				}
				st.snap.NewSize = size
			}
		}
	}
	if prev, err := e.cfg.Prefs.GetString(KeyPreviousVersion); err == nil && prev != "" && prev == e.cfg.CurrentVersion && st.snap.Status != status.UpdatedNeedReboot {
		st.snap.LastError = status.RollbackError
		st.snap.LastErrorMessage = "the machine came back on version " + prev + " after an update"
		e.log.Warn("rollback detected: still running the version we updated from", "version", prev)
		if e.cfg.Metrics != nil {
			e.cfg.Metrics.Error(status.RollbackError)
		}
	}
	e.refreshSlots(ctx, &st.snap)
}

func (e *Engine) refreshSlots(ctx context.Context, s *Snapshot) {
	if e.cfg.Slots == nil {
		return
	}
	s.BootedSlot = e.cfg.Slots.Booted()
	if n, err := e.cfg.Slots.NextBoot(ctx); err == nil {
		s.NextBootSlot = n
	}
	if ok, err := e.cfg.Slots.CanRollback(ctx); err == nil {
		s.CanRollback = ok && s.Status != status.UpdatedNeedReboot
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

func (e *Engine) interrupted() bool {
	step, err := e.cfg.Prefs.GetString(KeyStep)
	return err == nil && step != ""
}

func (e *Engine) arm(st *state, d time.Duration) {
	if e.cfg.Schedule.Disabled {
		st.checkAt = nil
		return
	}
	st.checkAt = e.cfg.Clock.After(d)
}

// handle answers one D-Bus request.
func (e *Engine) handle(ctx context.Context, wg *sync.WaitGroup, st *state, r request) error {
	switch r.kind {
	case reqAttempt:
		if st.busy || st.snap.Status != status.Idle {
			e.log.Info("AttemptUpdate ignored: not idle", "status", st.snap.Status)
			return nil
		}
		server := ""
		if r.omahaURL != "" && e.cfg.AllowOmahaURL {
			server = r.omahaURL
		}
		e.start(ctx, wg, st, true, server)
		return nil
	case reqReset:
		switch {
		case st.busy:
			return ErrBusy
		case st.snap.Status == status.Idle:
			return nil
		case st.snap.Status == status.UpdatedNeedReboot:
			if e.cfg.MarkerPath != "" {
				if err := os.Remove(e.cfg.MarkerPath); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
			st.snap.Status = status.Idle
			st.snap.NewVersion = "0.0.0"
			st.snap.NewSize = 0
			st.snap.Progress = 0
			return nil
		}
		return ErrBusy
	case reqRollback:
		if st.busy || st.snap.Status != status.Idle {
			return ErrNotIdle
		}
		if e.cfg.Slots == nil {
			return ErrNoSlots
		}
		ok, err := e.cfg.Slots.CanRollback(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNoRollback
		}
		flip := e.cfg.Slots.MarkPassiveForTrial
		if r, ok := e.cfg.Slots.(rollbacker); ok {
			flip = r.RollbackToPassive
		}
		if err := flip(ctx); err != nil {
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
		e.arm(st, e.cfg.Schedule.next(e.float(), 0, 0))
	case st.snap.Status == status.UpdatedNeedReboot:
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
				e.arm(st, e.cfg.Schedule.next(e.float(), 0, st.poll))
			})
		}()
	case st.snap.Status == status.Idle:
		e.start(ctx, wg, st, false, "")
	default:
		e.arm(st, e.cfg.Schedule.next(e.float(), 0, 0))
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

// start moves to CHECKING_FOR_UPDATE and starts the attempt worker.
func (e *Engine) start(ctx context.Context, wg *sync.WaitGroup, st *state, interactive bool, server string) {
	e.refresh(st)
	st.busy = true
	st.checkAt = nil
	st.snap.Status = status.CheckingForUpdate
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

// publish stores the snapshot and tells the Notifier on a status change,
// a progress step of at least 1 %, 10 s since the last signal during a
// download, or the end of the download. force sends regardless.
func (e *Engine) publish(st *state, force bool) {
	s := st.snap
	e.snap.Store(&s)
	if e.cfg.Metrics != nil && s.Status != st.emitted.Status {
		e.cfg.Metrics.SetStatus(s.Status)
	}
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
	if e.cfg.Notifier != nil {
		e.cfg.Notifier.StatusChanged(s)
	}
}

// bootedSlot names the booted slot, "" without slots.
func (e *Engine) bootedSlot() string {
	if e.cfg.Slots == nil {
		return ""
	}
	return e.cfg.Slots.Booted()
}
