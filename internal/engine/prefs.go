package engine

import (
	"encoding/binary"
	"errors"

	"github.com/abupdate/update_engine/internal/prefs"
)

// Pref keys. Flatcar's names where Flatcar has the concept.
const (
	KeyPreviousVersion   = prefs.KeyPreviousVersion         // version we updated from
	KeyResponseHash      = prefs.KeyUpdateCheckResponseHash // base64 SHA-256 of the payload being applied
	KeyResumes           = prefs.KeyResumedUpdateFailures   // resumes of that payload so far
	KeyNextDataOffset    = prefs.KeyUpdateStateNextDataOffset
	KeyCheckpoint        = "update-state-checkpoint"   // 8-byte big-endian offset + applier state
	KeyStep              = "update-state-step"         // the step being taken: downloading, finalizing
	KeyChannel           = "target-channel"            // SetChannel
	KeyFlipTime          = "flip-time"                 // unix time of the last flip, for flip_to_good
	KeyRollbackVersion   = "rollback-detected-version" // version a rollback was reported for
	KeyPCRRecord         = "pcr-record"                // JSON of the last PCR measurement at flip
	KeyDeltaFailures     = "delta-update-failures"     // delta payloads that failed for good since the last update (ChromeOS's name)
	KeyAppliedEvent      = "applied-event-pending"     // the 3/1 event is owed (value: the server override); set at the flip
	KeyCurrentBytes      = prefs.KeyCurrentBytesDownloaded
	KeySystemUpdatedMark = prefs.KeySystemUpdatedMarkerTimestamp
)

func (e *Engine) saveCheckpoint(cp Checkpoint) error {
	b := make([]byte, 8+len(cp.State))
	binary.BigEndian.PutUint64(b, uint64(cp.Offset))
	copy(b[8:], cp.State)
	if err := e.cfg.Prefs.Set(KeyCheckpoint, b); err != nil {
		return err
	}
	return e.cfg.Prefs.SetInt64(KeyNextDataOffset, cp.Offset)
}

func (e *Engine) loadCheckpoint() (*Checkpoint, bool) {
	b, err := e.cfg.Prefs.Get(KeyCheckpoint)
	if err != nil || len(b) < 8 {
		return nil, false
	}
	off := int64(binary.BigEndian.Uint64(b))
	if off < 0 {
		return nil, false
	}
	return &Checkpoint{Offset: off, State: append([]byte(nil), b[8:]...)}, true
}

// clearDownload forgets the payload being applied.
func (e *Engine) clearDownload() error {
	var errs []error
	for _, k := range []string{KeyCheckpoint, KeyNextDataOffset, KeyResponseHash, KeyResumes, KeyStep} {
		if err := e.cfg.Prefs.Delete(k); err != nil && !errors.Is(err, prefs.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
