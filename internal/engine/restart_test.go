package engine

import (
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/update1"
)

func init() {
	// An illegal status transition fails the engine's tests.
	illegalTransition = func(err error) { panic(err) }
}

// gptStates are the attribute sets a slot can have: unbootable, good
// (high or low), fresh from a flip (one try, high or low), tried and failed.
var gptStates = []SlotAttrs{
	{},
	{Priority: 1, Successful: true},
	{Priority: 2, Successful: true},
	{Priority: 2, Tries: 1},
	{Priority: 1, Tries: 1},
	{Priority: 2},
	{Priority: 1},
}

// TestDecideRestartExhaustive walks every phase × GPT state of both slots
// × booted slot × same or new boot (or unknown boot id) and checks the
// invariants of a restart:
//   - a slot flipped in this boot is never demoted (the update stays
//     pending, or its flip is redone);
//   - a rollback is reported only after a reboot onto the source slot with
//     the target not bootable next;
//   - UPDATED_NEED_REBOOT is reported only when the target boots next;
//   - a payload whose flip landed is never downloaded again;
//   - booting the target after a flip reports the update (3/2).
func TestDecideRestartExhaustive(t *testing.T) {
	phases := []Phase{"", PhaseDownloading, PhaseVerified, PhasePostinst, PhaseFlipping, PhaseFlipped}
	n := 0
	for _, phase := range phases {
		for _, a := range gptStates {
			for _, b := range gptStates {
				for _, booted := range []string{"A", "B"} {
					for _, boot := range []string{"boot-1", "boot-2", ""} {
						n++
						checkRestart(t, phase, a, b, booted, boot)
					}
				}
			}
		}
	}
	t.Logf("%d combinations", n)
}

func checkRestart(t *testing.T, phase Phase, a, b SlotAttrs, booted, bootID string) {
	t.Helper()
	rec := Record{Format: recordFormat, GoodBoot: "boot-0"}
	if phase != "" {
		rec.Update = &Update{Phase: phase, Source: "A", Target: "B", BootID: "boot-1", FromVersion: "1.0.0", ToVersion: "2.0.0",
			Size: 100, SHA256: make([]byte, 32)}
	}
	running := "1.0.0"
	if booted == "B" {
		running = "2.0.0"
	}
	h := host{Booted: booted, BootID: bootID, Version: running, Attrs: map[string]SlotAttrs{"A": a, "B": b}}
	p := decideRestart(rec, h)
	name := fmt.Sprintf("phase=%q A=%+v B=%+v booted=%s boot=%q", phase, a, b, booted, bootID)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: %s (plan %+v, update %+v, report %+v)", name, fmt.Sprintf(format, args...), p, p.Record.Update, p.Record.Report)
	}
	sameBoot := bootID == "boot-1"
	flipped := phase == PhaseFlipping || phase == PhaseFlipped
	targetNext := b.Bootable() && b.Priority > a.Priority

	if p.Record.GoodBoot != "boot-0" {
		fail("the good boot changed")
	}
	if phase == "" {
		if p.Record.Update != nil || p.Finish || p.Resume || p.Status != update1.Idle {
			fail("no update in flight, yet the restart acts")
		}
		return
	}
	u := p.Record.Update
	if p.Status == update1.UpdatedNeedReboot {
		if !targetNext || booted != "A" {
			fail("UPDATED_NEED_REBOOT while the target does not boot next")
		}
		if u == nil || u.Phase != PhaseFlipped {
			fail("UPDATED_NEED_REBOOT without a flipped update in the record")
		}
	}
	if sameBoot && booted == "A" && phase == PhaseFlipped && targetNext && p.Status != update1.UpdatedNeedReboot {
		fail("an update flipped in this boot is not pending")
	}
	if sameBoot && booted == "A" && phase == PhaseFlipping && !p.Finish {
		fail("killed during the flip in this boot, but the flip is not redone")
	}
	if r := p.Record.Report; r != nil && r.Rollback {
		if booted != "A" || sameBoot || !flipped || targetNext {
			fail("rollback reported without a reboot onto the source with the target not next")
		}
	}
	if p.Record.Report != nil && !p.Record.Report.Rollback && (booted != "B" || !flipped) {
		fail("update reported without booting the target")
	}
	if booted == "B" && flipped && (p.Record.Report == nil || p.Record.Report.Rollback) {
		fail("booted the updated slot, but the update is not reported")
	}
	if flipped && targetNext && (p.Resume || u != nil && u.Phase == PhaseDownloading) {
		fail("a payload whose flip landed would be downloaded again")
	}
	if p.Resume && (u == nil || u.Phase != PhaseDownloading || booted != "A") {
		fail("resume without an interrupted download on the source slot")
	}
	if p.Finish && (u == nil || booted != "A" || u.Phase == PhaseDownloading || u.Phase == PhaseFlipped) {
		fail("finish without a verified, unflipped update on the source slot")
	}
	if p.Finish && p.Status != update1.Idle {
		fail("finish starts from IDLE")
	}
	if p.Record.Update != nil && p.Record.Report != nil {
		fail("both an update in flight and an outcome")
	}
	if p.SendApplied && p.Status != update1.UpdatedNeedReboot {
		fail("3/1 owed but not pending")
	}
}

// TestDecideRestartCases pins the decision for the failures the restart
// once got wrong.
func TestDecideRestartCases(t *testing.T) {
	flippedInBoot1 := func(phase Phase) Record {
		return Record{Format: recordFormat, Update: &Update{Phase: phase, Source: "A", Target: "B", BootID: "boot-1",
			FromVersion: "1.0.0", ToVersion: "2.0.0", AppliedOwed: true}}
	}
	trial := map[string]SlotAttrs{"A": {Priority: 1, Successful: true}, "B": {Priority: 2, Tries: 1}}
	failed := map[string]SlotAttrs{"A": {Priority: 1, Successful: true}, "B": {Priority: 2}}
	unflipped := map[string]SlotAttrs{"A": {Priority: 2, Successful: true}, "B": {}}
	tests := []struct {
		name                     string
		rec                      Record
		h                        host
		status                   update1.Op
		finish, resume, rollback bool
		report                   bool
	}{
		{"killed between the flip and the marker: pending, not a rollback",
			flippedInBoot1(PhaseFlipped), host{Booted: "A", BootID: "boot-1", Version: "1.0.0", Attrs: trial},
			update1.UpdatedNeedReboot, false, false, false, false},
		{"killed during the flip write: flip again",
			flippedInBoot1(PhaseFlipping), host{Booted: "A", BootID: "boot-1", Version: "1.0.0", Attrs: unflipped},
			update1.Idle, true, false, false, false},
		{"power cut before the flip reached the disk: flip again",
			flippedInBoot1(PhaseFlipping), host{Booted: "A", BootID: "boot-2", Version: "1.0.0", Attrs: unflipped},
			update1.Idle, true, false, false, false},
		{"rebooted into the update",
			flippedInBoot1(PhaseFlipped), host{Booted: "B", BootID: "boot-2", Version: "2.0.0", Attrs: map[string]SlotAttrs{"A": {Priority: 1, Successful: true}, "B": {Priority: 2}}},
			update1.Idle, false, false, false, true},
		{"the update failed its try: rollback",
			flippedInBoot1(PhaseFlipped), host{Booted: "A", BootID: "boot-3", Version: "1.0.0", Attrs: failed},
			update1.Idle, false, false, true, true},
		{"the update booted, then failed before it was reported: rollback",
			Record{Report: &Outcome{FromVersion: "1.0.0", ToVersion: "2.0.0"}},
			host{Booted: "A", BootID: "boot-3", Version: "1.0.0", Attrs: failed},
			update1.Idle, false, false, true, true},
		{"download interrupted by a power cut: resume",
			Record{Update: &Update{Phase: PhaseDownloading, Source: "A", Target: "B", BootID: "boot-1"}},
			host{Booted: "A", BootID: "boot-2", Attrs: unflipped}, update1.Idle, false, true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := decideRestart(tt.rec, tt.h)
			rb := p.Record.Report != nil && p.Record.Report.Rollback
			if p.Status != tt.status || p.Finish != tt.finish || p.Resume != tt.resume || rb != tt.rollback || (p.Record.Report != nil) != tt.report {
				t.Fatalf("plan %+v report %+v (%s)", p, p.Record.Report, p.Why)
			}
		})
	}
}

// TestHealthGateKeepsFlippedUpdate: an update that completes before the
// health gate fires (an interactive update right after boot, or the
// automatic resume after a kill) keeps its slot first: the gate marks the
// booted slot successful as the fallback, never above the new slot. The
// gate runs once per boot, not once per daemon start.
func TestHealthGateKeepsFlippedUpdate(t *testing.T) {
	for _, killed := range []bool{false, true} {
		t.Run(fmt.Sprintf("killed_during_download=%v", killed), func(t *testing.T) {
			w := newWorld(t)
			payload := payloadBytes(2<<20, 21)
			w.publish("p2.bin", "2.0.0", payload, nil)
			m := newMachine(t, slotSize)
			m.slots.save(map[string]slotAttrs{"A": {Priority: 2, Tries: 1}, "B": {Priority: 1, Successful: true}}) // booted A on its one try
			clock := newFakeClock()
			config := func() Config {
				cfg := m.config(t, w, &recorder{})
				cfg.Clock = clock
				cfg.Health = HealthGate{Delay: 20 * time.Second}
				return cfg
			}
			if killed {
				w.slowDown = 2 * time.Millisecond
				e, cancel, done := start(t, config())
				if err := e.AttemptUpdate(t.Context(), ""); err != nil {
					t.Fatal(err)
				}
				waitFor(t, e, "30% downloaded", func(s Snapshot) bool { return s.Status == update1.Downloading && s.Progress > 0.3 })
				cancel()
				<-done
				w.mu.Lock()
				w.slowDown = 0
				w.mu.Unlock()
			}
			e, cancel, done := start(t, config())
			if err := e.AttemptUpdate(t.Context(), ""); err != nil {
				t.Fatal(err)
			}
			if s := waitFor(t, e, "done", func(s Snapshot) bool { return s.Status == update1.UpdatedNeedReboot || idleAfterAttempt(s) }); s.Status != update1.UpdatedNeedReboot {
				t.Fatalf("update ended %+v", s)
			}
			gateFires(t, clock, 25*time.Second)
			waitFor(t, e, "the gate", func(Snapshot) bool { return m.slots.load()["A"].Successful })
			if n, _ := m.slots.NextBoot(t.Context()); n != "B" {
				t.Fatalf("after the health gate the next boot is %s, want the updated B (%+v)", n, m.slots.load())
			}
			if a := m.slots.load()["A"]; !a.Successful || a.Tries != 0 || a.Priority == 0 {
				t.Fatalf("booted slot A after the gate: %+v, want successful fallback", a)
			}
			if s := e.Snapshot(); s.Status != update1.UpdatedNeedReboot || s.NextBootSlot != "B" {
				t.Fatalf("snapshot after the gate %+v", s)
			}
			cancel()
			<-done

			// A restart in the same boot does not run the gate again.
			attrs := m.slots.load()
			attrs["A"] = slotAttrs{Priority: 1, Tries: 1}
			m.slots.save(attrs)
			e2, cancel2, done2 := start(t, config())
			<-e2.Ready()
			clock.Advance(time.Hour)
			if a := m.slots.load()["A"]; a.Successful {
				t.Fatal("the health gate ran twice in one boot")
			}
			cancel2()
			<-done2

			// The next boot (into B) runs it and reports the update.
			if got := m.reboot(t); got != "B" {
				t.Fatalf("rebooted into %s", got)
			}
			m.version = "2.0.0"
			e3, _, _ := start(t, config())
			gateFires(t, clock, 25*time.Second)
			waitFor(t, e3, "the gate in the new boot", func(Snapshot) bool { return m.slots.load()["B"].Successful })
			if n, _ := m.slots.NextBoot(t.Context()); n != "B" {
				t.Fatalf("next boot %s after B was marked good", n)
			}
			if err := e3.AttemptUpdate(t.Context(), ""); err != nil {
				t.Fatal(err)
			}
			waitFor(t, e3, "check", idleAfterAttempt)
			ev := eventsString(w.omaha.Events())
			if !strings.HasSuffix(ev, "3/2 previousversion=1.0.0") || strings.Contains(ev, "errorcode=44") {
				t.Fatalf("server events %q: want the update reported, no rollback", ev)
			}
		})
	}
}

// gateFires waits until a timer is armed, then moves the clock past it.
func gateFires(t *testing.T, c *fakeClock, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.pending() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no timer armed")
		}
		time.Sleep(time.Millisecond)
	}
	c.Advance(d)
}

// TestTransitions: the table allows the documented flow and refuses the
// rest (a restart's IDLE → FINALIZING included, IDLE → UPDATED_NEED_REBOOT
// not: a pending reboot is restored before the first publish).
func TestTransitions(t *testing.T) {
	legal := [][2]update1.Op{
		{update1.Idle, update1.CheckingForUpdate}, {update1.CheckingForUpdate, update1.Idle},
		{update1.Downloading, update1.Verifying}, {update1.Idle, update1.Finalizing},
		{update1.Finalizing, update1.UpdatedNeedReboot}, {update1.UpdatedNeedReboot, update1.Idle},
		{update1.Downloading, update1.ReportingErrorEvent}, {update1.ReportingErrorEvent, update1.Idle},
	}
	illegal := [][2]update1.Op{
		{update1.Downloading, update1.Idle}, {update1.Idle, update1.UpdatedNeedReboot}, {update1.Idle, update1.Downloading},
		{update1.UpdatedNeedReboot, update1.CheckingForUpdate}, {update1.Verifying, update1.Downloading},
	}
	for _, tr := range legal {
		if err := checkTransition(tr[0], tr[1]); err != nil {
			t.Errorf("%v → %v refused: %v", tr[0], tr[1], err)
		}
	}
	for _, tr := range illegal {
		if err := checkTransition(tr[0], tr[1]); !errors.Is(err, ErrIllegalTransition) {
			t.Errorf("%v → %v allowed", tr[0], tr[1])
		}
	}
}

// TestMigrateLegacyLayout: the first start on the prefs and marker of the
// layout before the record moves them into the record once: an
// interrupted download resumes from its checkpoint, a pending reboot stays
// pending, and the old keys are gone.
func TestMigrateLegacyLayout(t *testing.T) {
	t.Run("interrupted download", func(t *testing.T) {
		w := newWorld(t)
		payload := payloadBytes(1<<20, 41)
		w.publish("p2.bin", "2.0.0", payload, nil)
		m := newMachine(t, slotSize)
		cfg := m.config(t, w, &recorder{})
		// What the old engine left 512 KiB into the download: the slot
		// holds the first half, the checkpoint the hash state there.
		half := 512 << 10
		if err := os.WriteFile(filepath.Join(m.slots.dir, "B"), append(append([]byte(nil), payload[:half]...), make([]byte, slotSize-half)...), 0o644); err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		h.Write(payload[:half])
		st, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
		cp := make([]byte, 8+len(st))
		binary.BigEndian.PutUint64(cp, uint64(half))
		copy(cp[8:], st)
		for k, v := range map[string]string{legacyKeyStep: "downloading", legacyKeyResponseHash: b64(sha256Sum(payload)),
			legacyKeyCheckpoint: string(cp), legacyKeyNextOffset: fmt.Sprint(half)} {
			if err := cfg.Prefs.Set(k, []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		e, _, _ := start(t, cfg)
		<-e.Ready()
		for _, k := range []string{legacyKeyStep, legacyKeyResponseHash, legacyKeyCheckpoint, legacyKeyNextOffset} {
			if _, err := cfg.Prefs.Get(k); err == nil {
				t.Errorf("old key %s kept", k)
			}
		}
		if err := e.AttemptUpdate(t.Context(), ""); err != nil {
			t.Fatal(err)
		}
		s := waitFor(t, e, "done", func(s Snapshot) bool { return s.Status == update1.UpdatedNeedReboot || idleAfterAttempt(s) })
		if s.Status != update1.UpdatedNeedReboot || s.Resumes != 1 {
			t.Fatalf("ended %+v, want a resumed update", s)
		}
		w.mu.Lock()
		ranges := w.ranges
		w.mu.Unlock()
		if len(ranges) != 1 || ranges[0] != fmt.Sprintf("bytes=%d-", half) {
			t.Fatalf("payload requests %q, want one from the old checkpoint", ranges)
		}
		if !fileEquals(t, filepath.Join(m.slots.dir, "B"), payload) {
			t.Fatal("slot B differs")
		}
	})
	t.Run("pending reboot", func(t *testing.T) {
		w := newWorld(t)
		m := newMachine(t, slotSize)
		cfg := m.config(t, w, &recorder{})
		_ = m.slots.MarkPassiveForTrial(t.Context())
		if err := os.WriteFile(cfg.MarkerPath, []byte(markerBody("2.0.0", 1234, "A")), 0o644); err != nil {
			t.Fatal(err)
		}
		_ = cfg.Prefs.SetString(KeyPreviousVersion, "1.0.0")
		_ = cfg.Prefs.SetString(legacyKeyAppliedEvent, "")
		e, _, _ := start(t, cfg)
		<-e.Ready()
		if s := e.Snapshot(); s.Status != update1.UpdatedNeedReboot || s.NewVersion != "2.0.0" || s.LastError != omaha.Success {
			t.Fatalf("restored %+v, want UPDATED_NEED_REBOOT for 2.0.0 and no rollback", s)
		}
		r, found, err := loadRecord(cfg.Prefs)
		if err != nil || !found || r.Update == nil || r.Update.Phase != PhaseFlipped || r.Update.FromVersion != "1.0.0" {
			t.Fatalf("record %+v %v %v", r.Update, found, err)
		}
		for deadline := time.Now().Add(10 * time.Second); countEvents(eventsString(w.omaha.Events()), "3/1") != 1; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the owed 3/1 was not sent: %q", eventsString(w.omaha.Events()))
			}
		}
	})
}

func countEvents(events, ev string) int {
	n := 0
	for _, e := range strings.Split(events, ", ") {
		if e == ev {
			n++
		}
	}
	return n
}

// TestServerDisabled: while update.conf says SERVER=disabled, scheduled
// checks and AttemptUpdate make no request and change nothing (no error,
// no backoff); once SERVER is set again, the next scheduled check runs.
func TestServerDisabled(t *testing.T) {
	w := newWorld(t)
	m := newMachine(t, slotSize)
	cfg := m.config(t, w, &recorder{})
	clock := newFakeClock()
	cfg.Clock = clock
	cfg.Schedule = Schedule{Initial: 7 * time.Minute, Interval: 45 * time.Minute, Fuzz: -1}
	var mu sync.Mutex // guards server
	server := ServerDisabled
	real := cfg.Server
	cfg.Settings = func() (Settings, error) {
		mu.Lock()
		defer mu.Unlock()
		return Settings{Server: server}, nil
	}
	e, _, _ := start(t, cfg)
	if err := e.AttemptUpdate(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Duration{7 * time.Minute, 45 * time.Minute, 45 * time.Minute} {
		waitArmed(t, clock, want, fmt.Sprintf("scheduled check %d while disabled", i))
	}
	if n := len(w.omaha.Records()); n != 0 {
		t.Fatalf("%d Omaha requests while SERVER=disabled", n)
	}
	if s := e.Snapshot(); s.Status != update1.Idle || s.LastError != omaha.Success || s.LastChecked != 0 {
		t.Fatalf("snapshot while disabled %+v", s)
	}
	// The engine handled the last timer (it armed the next one) before
	// SERVER is set: else, under load, that timer fires the first check
	// and the one below a second.
	waitPending(t, clock, "the timer after the last check while disabled")
	mu.Lock()
	server = real
	mu.Unlock()
	waitArmed(t, clock, 45*time.Minute, "the first check with SERVER set")
	waitFor(t, e, "a check", idleAfterAttempt)
	if n := len(w.omaha.Records()); n != 1 {
		t.Fatalf("%d requests after SERVER was set again, want 1", n)
	}
}

// waitPending waits until a timer is armed, without firing it.
func waitPending(t *testing.T, c *fakeClock, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.pending() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: nothing armed", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitArmed waits for the next timer, checks its delay and fires it.
func waitArmed(t *testing.T, c *fakeClock, want time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if d, ok := c.nextIn(); ok {
			if d != want {
				t.Fatalf("%s: armed in %v, want %v", what, d, want)
			}
			c.Advance(d)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: nothing armed", what)
		}
		time.Sleep(time.Millisecond)
	}
}
