package engine

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"os"

	"github.com/abupdate/update_engine/internal/prefs"
)

// Pref keys besides the record. Flatcar's names where Flatcar has the
// concept; these are derived from the record (previous-version) or are
// settings and counters that outlive one update.
const (
	KeyPreviousVersion = prefs.KeyPreviousVersion     // version we updated from (Flatcar's postinst and tools read it)
	KeyChannel         = "target-channel"             // SetChannel
	KeyPCRRecord       = "pcr-record"                 // JSON of the last PCR measurement at flip, for attestation tools (the engine only writes it)
	KeyDeltaFailures   = prefs.KeyDeltaUpdateFailures // delta payloads that failed for good since the last update (ChromeOS's name)
)

// The keys of the layout before the record: migrateLegacy reads those
// that still say something, once, and dropLegacy deletes them all.
const (
	legacyKeyResponseHash  = prefs.KeyUpdateCheckResponseHash
	legacyKeyResumes       = prefs.KeyResumedUpdateFailures
	legacyKeyNextOffset    = prefs.KeyUpdateStateNextDataOffset
	legacyKeyCheckpoint    = "update-state-checkpoint"
	legacyKeyStep          = "update-state-step"
	legacyKeyFlipTime      = "flip-time"
	legacyKeyAppliedEvent  = "applied-event-pending"
	legacyKeyRollbackVer   = "rollback-detected-version"
	legacyKeyCurrentBytes  = prefs.KeyCurrentBytesDownloaded
	legacyKeyStepFinishing = "finalizing" // legacyKeyStep's value once verified
)

// migrateLegacy builds the record from the prefs and marker file an older
// engine wrote, the first time this engine starts on them. h.Booted and
// passive name the slots now.
func (e *Engine) migrateLegacy(h host, passive string) (Record, bool) {
	p := e.cfg.Prefs
	rec := Record{Format: recordFormat}
	prev, _ := p.GetString(KeyPreviousVersion)
	newUpdate := func(phase Phase) *Update {
		u := &Update{Phase: phase, Source: h.Booted, Target: passive, FromVersion: e.cfg.CurrentVersion}
		if t, err := p.GetInt64(legacyKeyFlipTime); err == nil {
			u.FlipTime = t
		}
		if server, err := p.GetString(legacyKeyAppliedEvent); err == nil {
			u.AppliedOwed, u.Server = true, server
		}
		return u
	}
	step, _ := p.GetString(legacyKeyStep)
	marker, markerErr := os.ReadFile(e.cfg.MarkerPath)
	switch {
	case e.cfg.MarkerPath != "" && markerErr == nil:
		v, size, from := parseMarker(string(marker))
		u := newUpdate(PhaseFlipped)
		if from != "" && from != h.Booted {
			// Written in the boot before this one (a run directory that
			// is not a tmpfs), from the other slot.
			u.Source, u.Target = from, h.Booted
		} else {
			u.BootID = h.BootID // the run directory is a tmpfs: this boot
		}
		if prev != "" {
			u.FromVersion = prev
		}
		u.ToVersion, u.Size = v, size
		rec.Update = u
	case step == legacyKeyStepFinishing:
		// Verified; the flip may or may not have landed: redo it or
		// report it by the GPT (decideRestart).
		rec.Update = newUpdate(PhaseFlipping)
	case step != "":
		u := newUpdate(PhaseDownloading)
		if s, err := p.GetString(legacyKeyResponseHash); err == nil {
			u.SHA256, _ = base64.StdEncoding.DecodeString(s)
		}
		if n, err := p.GetInt64(legacyKeyResumes); err == nil {
			u.Resumes = int(n)
		}
		if b, err := p.Get(legacyKeyCheckpoint); err == nil && len(b) >= 8 {
			if off := int64(binary.BigEndian.Uint64(b)); off > 0 {
				u.Checkpoint = &Checkpoint{Offset: off, State: append([]byte(nil), b[8:]...)}
			}
		}
		rec.Update = u
	case prev != "":
		// Rebooted since an update: the next check reports it.
		rec.Report = &Outcome{FromVersion: prev, Rollback: prev == e.cfg.CurrentVersion}
		if t, err := p.GetInt64(legacyKeyFlipTime); err == nil {
			rec.Report.FlipTime = t
		}
	}
	found := rec.Update != nil || rec.Report != nil
	return rec, found
}

// dropLegacy deletes the old layout's keys once the record holds them.
func (e *Engine) dropLegacy() {
	for _, k := range []string{legacyKeyResponseHash, legacyKeyResumes, legacyKeyNextOffset, legacyKeyCheckpoint,
		legacyKeyStep, legacyKeyFlipTime, legacyKeyAppliedEvent, legacyKeyRollbackVer, legacyKeyCurrentBytes} {
		if err := e.cfg.Prefs.Delete(k); err != nil && !errors.Is(err, prefs.ErrNotFound) {
			e.log.Warn("cannot delete a pref of the old layout", "key", k, "err", err)
		}
	}
}
