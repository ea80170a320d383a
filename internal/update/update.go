// Package update is the vocabulary between the update engine
// (internal/engine) and its parts (internal/parts): the plain values that
// cross each seam (a check request, an offered plan, an Omaha event, an
// applier's checkpoint and result), the passive slot as a write target,
// and what the parts' error sentinels mean as update_engine codes
// (PackageCode, codes.go).
//
// It is a leaf so that the parts do not import the engine and the
// engine does not import the parts: the engine declares the interfaces it
// consumes over these types, the parts implement them, and the daemon
// wires one to the other. The engine's own tests use the real parts (the
// Omaha client against a real server), which this cut allows.
package update

import (
	"errors"
	"io"
	"time"

	"github.com/abupdate/update_engine/internal/config"
	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/pkg/omaha"
)

// CheckResult is the outcome of one update check: the engine's CheckDone
// observation carries it, and internal/metrics uses it as the result
// label of checks_total, so the strings are part of the metrics' API.
type CheckResult string

// The check results.
const (
	CheckUpdateAvailable CheckResult = "update_available"
	CheckNoUpdate        CheckResult = "no_update"
	CheckError           CheckResult = "error"
)

// CheckRequest is one Omaha request.
type CheckRequest struct {
	// InstallSource is "ondemandupdate" (D-Bus) or "scheduler".
	InstallSource string
	// Track is the Omaha track (GROUP / channel).
	Track string
	// Server overrides the configured Omaha URL when not empty.
	Server string
	// PingOnly sends just <ping> (scheduled checks while a reboot is
	// pending).
	PingOnly bool
	// PreviousVersion is the previous-version pref: "0.0.0.0" when it
	// never existed, "" once cleared, else the version updated from. The
	// check carries 3/2 previousversion=<it>, or 3/0 errorcode=44 when it
	// equals the running version (rollback).
	PreviousVersion string
	// DeltaOK asks for a delta payload (delta_okay="true"): set unless a
	// delta failed for good since the last update, so that a server then
	// offers the full payload instead of the same failing delta.
	DeltaOK bool
}

// Event is an Omaha <event>, named with pkg/omaha's typed constants.
type Event = omaha.Event

// FailureEvent is the event of a failed attempt: 3/0 errorcode=<code>
// (code with its flag bits), or 3/9 for codes 35, 36 and 40.
func FailureEvent(code omaha.Code) Event { return omaha.ErrorEvent(int32(code)) }

// The events of an update attempt (SPEC.md 1a).
var (
	// EventDownloadStarted (13/1) goes out before the first payload byte.
	EventDownloadStarted = omaha.Event{Type: omaha.EventTypeUpdateDownloadStarted, Result: omaha.EventResultSuccess}
	// EventDownloadFinished (14/1) goes out once the payload is in.
	EventDownloadFinished = omaha.Event{Type: omaha.EventTypeUpdateDownloadFinished, Result: omaha.EventResultSuccess}
	// EventUpdateApplied (3/1) goes out after the flip.
	EventUpdateApplied = omaha.Event{Type: omaha.EventTypeUpdateComplete, Result: omaha.EventResultSuccess}
)

// Plan is an offered update, or with NoUpdate the answer that offers
// none (only PollInterval is set then).
type Plan struct {
	NoUpdate     bool
	Version      string
	URLs         []string // full payload URLs, tried in order
	Size         int64
	SHA256       []byte // raw SHA-256 of the whole payload
	Delta        bool
	PollInterval time.Duration // 0 = none given
	// PostinstArgs follow the device on the post-install program's
	// command line: KERNEL=<path> and PCR_POLICY=<path> for the files
	// the payload installed (Flatcar's postinst_args), in payload order.
	PostinstArgs []string
}

// ServerDisabled is the SERVER value that turns updates off
// (flatcar-update --disable-afterwards writes it). Flatcar's update_engine
// has no special case: its requests fail to reach a host named
// "disabled". Here the engine schedules no check, and the Omaha part
// makes no request at all and returns ErrUpdatesDisabled.
const ServerDisabled = config.ServerDisabled

// ErrUpdatesDisabled is returned for every request while SERVER=disabled.
// It carries OmahaUpdateIgnoredPerPolicy (35): the engine reports the
// check as refused by policy, which it is.
var ErrUpdatesDisabled = status.WithCode(omaha.OmahaUpdateIgnoredPerPolicy, errors.New("engine: updates are disabled (SERVER=disabled)"))

// Checkpoint is the applier's resumable state after a whole operation:
// Offset payload bytes were consumed; State is opaque to the engine.
type Checkpoint struct {
	Offset int64
	State  []byte
}

// Applied is what a finished apply measured over the whole payload.
type Applied struct {
	Size   int64
	SHA256 []byte
	// PartitionHash is the verified SHA-256 of the new partition image,
	// when the payload declares one.
	PartitionHash []byte
	// Files are the files the payload wrote through Files, verified.
	Files []AppliedFile
}

// AppliedFile is a file a payload carried beside the partition (a
// Flatcar install procedure), written and verified.
type AppliedFile struct {
	Name   string // the payload's name for it: "kernel", "pcr_policy"
	Size   uint64
	SHA256 []byte
}

// FileTarget is a file an applier writes (*os.File is one).
type FileTarget interface {
	io.WriterAt
	io.ReaderAt
	Truncate(size int64) error
	Sync() error
}

// Files opens where a payload's file of that name is written (the
// kernel, the PCR policy); a nil FileTarget and nil error mean the host
// keeps no such file: the applier verifies and drops its data.
type Files func(name string) (FileTarget, error)

// Target is the passive slot opened for writing. It reads back too: an
// applier verifies the new partition on the device when the payload's
// operations did not write it front to back.
type Target interface {
	io.WriterAt
	io.ReaderAt
	Sync() error
	Close() error
	// Direct reports whether writes bypass the page cache (O_DIRECT):
	// the applier then writes whole aligned blocks.
	Direct() bool
}

// SlotAttrs are one slot's GPT boot attributes.
type SlotAttrs struct {
	Priority, Tries int
	Successful      bool
}

// Bootable is whether a gptprio boot stage may pick the slot.
func (a SlotAttrs) Bootable() bool { return a.Priority > 0 && (a.Tries > 0 || a.Successful) }
