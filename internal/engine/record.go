package engine

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/abupdate/update_engine/internal/prefs"
)

// KeyRecord is the pref holding the update record (JSON).
const KeyRecord = "update-engine-record"

// recordFormat is the record's layout version; a record of another
// version is refused rather than guessed at.
const recordFormat = 1

// Phase is the step an update in flight has reached. The record is
// written with the phase *before* the step it names is taken, so a
// restart knows the step may be half done and redoes or undoes it.
type Phase string

// The phases, in order.
const (
	// PhaseDownloading: the passive slot is (about to be) marked
	// unbootable and written; Checkpoint says how far.
	PhaseDownloading Phase = "downloading"
	// PhaseVerified: the whole payload is in the passive slot, synced,
	// and verified (signature, hashes, Omaha size and SHA-256).
	PhaseVerified Phase = "verified"
	// PhasePostinst: the new image's post-install step is running.
	PhasePostinst Phase = "postinst"
	// PhaseFlipping: the GPT flip to the target is being written.
	PhaseFlipping Phase = "flipping"
	// PhaseFlipped: the target boots next; a reboot is needed.
	PhaseFlipped Phase = "flipped"
)

// Update is the update in flight.
type Update struct {
	Phase  Phase  `json:"phase"`
	Source string `json:"source"` // slot booted when the update started
	Target string `json:"target"` // slot written (the passive one then)
	// BootID is the boot in which Phase was written: a restart in the
	// same boot is not a reboot.
	BootID      string `json:"boot_id"`
	FromVersion string `json:"from_version"`
	ToVersion   string `json:"to_version"`
	// The payload's identity, from Omaha.
	Size   int64  `json:"size"`
	SHA256 []byte `json:"sha256"`
	Delta  bool   `json:"delta,omitempty"`
	// Server is the attempt's server override ("" = the configured one);
	// owed events go there.
	Server     string      `json:"server,omitempty"`
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	Resumes    int         `json:"resumes,omitempty"`
	// Files are the payload's files renamed into place (the kernel, the
	// PCR policy), set with PhaseVerified; post-install checks them again
	// and gets their paths.
	Files []InstalledFile `json:"files,omitempty"`
	// FlipTime is the unix time of the flip (for flip_to_good).
	FlipTime int64 `json:"flip_time,omitempty"`
	// AppliedOwed: the 3/1 event has not been sent yet.
	AppliedOwed bool `json:"applied_owed,omitempty"`
}

// Outcome is what the first check after a reboot reports about the update
// that was flipped before it.
type Outcome struct {
	// FromVersion is the version updated from: the check sends 3/2
	// previousversion=<it>, or 3/0 errorcode=44 when the machine still
	// runs it (the new slot failed and the firmware fell back).
	FromVersion string `json:"from_version"`
	ToVersion   string `json:"to_version"`
	Rollback    bool   `json:"rollback,omitempty"`
	FlipTime    int64  `json:"flip_time,omitempty"`
}

// Record is the engine's durable truth. Restart decides from it (and the
// GPT, the booted slot and the running version) alone; the Flatcar-named
// prefs and the completion marker are derived from it for other tools.
type Record struct {
	Format int      `json:"format"`
	Update *Update  `json:"update,omitempty"`
	Report *Outcome `json:"report,omitempty"`
	// GoodBoot is the boot whose health gate marked the booted slot
	// good: the gate runs once per boot, not once per daemon start.
	GoodBoot string `json:"good_boot,omitempty"`
}

// ErrRecord wraps a record that cannot be read or written.
var ErrRecord = errors.New("engine: update record")

// loadRecord reads the record; found is false when there is none.
func loadRecord(p Prefs) (rec Record, found bool, err error) {
	b, err := p.Get(KeyRecord)
	if errors.Is(err, prefs.ErrNotFound) {
		return Record{Format: recordFormat}, false, nil
	}
	if err != nil {
		return Record{Format: recordFormat}, false, fmt.Errorf("%w: %w", ErrRecord, err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return Record{Format: recordFormat}, true, fmt.Errorf("%w: %s: %w", ErrRecord, KeyRecord, err)
	}
	if rec.Format != recordFormat {
		return Record{Format: recordFormat}, true, fmt.Errorf("%w: format %d, this engine reads %d", ErrRecord, rec.Format, recordFormat)
	}
	return rec, true, nil
}

// storeRecord writes the record atomically and durably (prefs.Store.Set:
// temp file, fsync, rename, fsync of the directory).
func storeRecord(p Prefs, rec Record) error {
	rec.Format = recordFormat
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRecord, err)
	}
	if err := p.Set(KeyRecord, b); err != nil {
		return fmt.Errorf("%w: %w", ErrRecord, err)
	}
	return nil
}

// clone returns a deep enough copy to modify.
func (r Record) clone() Record {
	if r.Update != nil {
		u := *r.Update
		if u.Checkpoint != nil {
			cp := *u.Checkpoint
			u.Checkpoint = &cp
		}
		r.Update = &u
	}
	if r.Report != nil {
		o := *r.Report
		r.Report = &o
	}
	return r
}

// record returns a copy of the stored record.
func (e *Engine) record() Record {
	e.recMu.Lock()
	defer e.recMu.Unlock()
	return e.rec.clone()
}

// change applies f to a copy of the record and stores it; the record
// changes only when the write succeeded.
func (e *Engine) change(f func(*Record)) error {
	e.recMu.Lock()
	defer e.recMu.Unlock()
	return e.changeLocked(f)
}

func (e *Engine) changeLocked(f func(*Record)) error {
	r := e.rec.clone()
	f(&r)
	if err := storeRecord(e.cfg.Prefs, r); err != nil {
		return err
	}
	e.rec = r
	return nil
}

// changeUpdate is change on the update in flight (with none, the record
// is stored as it is).
func (e *Engine) changeUpdate(f func(*Update)) error {
	return e.change(func(r *Record) {
		if r.Update != nil {
			f(r.Update)
		}
	})
}

// saveCheckpoint records the applier's checkpoint (its writes to the slot
// are synced before it is called).
func (e *Engine) saveCheckpoint(cp Checkpoint) error {
	return e.changeUpdate(func(u *Update) { u.Checkpoint = &cp })
}
