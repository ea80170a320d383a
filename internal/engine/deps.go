package engine

import (
	"context"
	"io"
	"time"

	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/pkg/clock"
)

// The seams: small interfaces the engine consumes. Adapters to the real
// packages live in the daemon (or in adapters.go here when trivial).

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

// Event is an Omaha <event>.
type Event struct {
	Type      int         // 3 update complete, 13 download started, 14 download finished
	Result    int         // 0 error, 1 success, 9 deferred
	ErrorCode status.Code // sent when Result != 1 (with flag bits)
}

// Plan is an offered update.
type Plan struct {
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

// Checker talks Omaha.
type Checker interface {
	// Check returns the plan, or (nil, nil) when there is no update (or
	// for a ping-only request).
	Check(ctx context.Context, req CheckRequest) (*Plan, error)
	// SendEvent reports one event; server "" means the configured one.
	SendEvent(ctx context.Context, server string, ev Event) error
}

// Downloader opens the payload body at offset (an HTTP Range request when
// offset > 0), failing over between plan.URLs.
type Downloader interface {
	Open(ctx context.Context, plan *Plan, offset int64) (io.ReadCloser, error)
}

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

// Applier applies a payload stream onto dst, and the files it carries
// beside the partition onto what files opens. from is nil for a fresh
// start, or the last saved checkpoint, in which case r starts at
// from.Offset (and the files are written from their start again). save
// is called after each checkpoint-worthy step; if it fails, Apply must
// stop with that error. Apply verifies the payload (signatures, partition
// hash, files) before returning nil.
type Applier interface {
	// Ready fails when no payload could be verified now (no key to check
	// signatures with): the engine asks before it downloads or writes.
	Ready() error
	// plan carries Omaha's size and SHA-256, which an applier may check
	// early; the engine checks them again on the result.
	Apply(ctx context.Context, plan *Plan, r io.Reader, src io.ReaderAt, dst Target, files Files, from *Checkpoint, save func(Checkpoint) error) (Applied, error)
}

// Target is the passive slot opened for writing. It reads back too: an
// applier verifies the new partition on the device when the payload's
// operations did not write it front to back.
type Target interface {
	io.WriterAt
	io.ReaderAt
	Sync() error
	Close() error
}

// Slots is the A/B pair. Every method is required: the safety steps
// (unbootable before the first write, the GPT read at restart) are not
// optional.
type Slots interface {
	// Booted and Passive name the slots ("A"/"B", or a partition label).
	Booted() string
	Passive() string
	// PassiveDevice is the path handed to the post-install program.
	PassiveDevice() string
	// Active opens the booted slot read-only (source for deltas).
	Active() (io.ReaderAt, io.Closer, error)
	// OpenPassive opens the passive slot for writing.
	OpenPassive(ctx context.Context) (Target, error)
	// MarkPassiveUnbootable clears the passive slot's priority, tries
	// and successful bits before it is written, so a half-written slot
	// never boots.
	MarkPassiveUnbootable(ctx context.Context) error
	// MarkPassiveForTrial: highest priority, tries=1, successful=0.
	MarkPassiveForTrial(ctx context.Context) error
	// MarkBootedGood: successful=1, tries=0 and highest priority on the
	// booted slot (flatcar-setgoodroot).
	MarkBootedGood(ctx context.Context) error
	// MarkBootedSuccessful: successful=1, tries=0 on the booted slot,
	// priorities unchanged (the passive slot holds a flipped update that
	// must still boot next).
	MarkBootedSuccessful(ctx context.Context) error
	// RollbackToPassive makes the passive slot boot next keeping its
	// bits.
	RollbackToPassive(ctx context.Context) error
	// Attrs reads both slots' GPT boot attributes, by slot name.
	Attrs(ctx context.Context) (map[string]SlotAttrs, error)
	// NextBoot names the slot the bootloader picks next.
	NextBoot(ctx context.Context) (string, error)
	// CanRollback reports whether the passive slot holds a bootable image.
	CanRollback(ctx context.Context) (bool, error)
}

// Measurer is an optional Floor method: measure the new image into a TPM
// PCR at flip time and return a record to keep in prefs (KeyPCRRecord).
type Measurer interface {
	Measure(ctx context.Context, imageSHA256 []byte) ([]byte, error)
}

// Prefs is the durable key → value store (internal/prefs.Store).
type Prefs interface {
	Get(key string) ([]byte, error)
	Set(key string, value []byte) error
	Delete(key string) error
	GetString(key string) (string, error)
	SetString(key, value string) error
	GetInt64(key string) (int64, error)
	SetInt64(key string, n int64) error
}

// Floor is the anti-rollback version floor (internal/antirollback).
type Floor interface {
	// Check fails when version is below the floor.
	Check(ctx context.Context, version string) error
	// Raise moves the floor up to version (never down).
	Raise(ctx context.Context, version string) error
}

// CheckResult labels a finished check; the values are internal/metrics'
// CheckResult strings.
type CheckResult string

// The check results.
const (
	CheckUpdateAvailable CheckResult = "update_available"
	CheckNoUpdate        CheckResult = "no_update"
	CheckError           CheckResult = "error"
)

// Metrics is the part of *metrics.Metrics the engine records into.
type Metrics interface {
	CheckDone(result CheckResult, at time.Time)
	AddDownloaded(n int64)
	AddWritten(n int64)
	ObserveApply(n int64, d time.Duration)
	Resumed()
	Error(c status.Code)
	SetStatus(s status.Update)
	ObserveFlipToGood(d time.Duration)
}

// Notifier hears every published status change (the D-Bus signal).
type Notifier interface {
	StatusChanged(s Snapshot)
}

// Clock is the engine's time source.
type Clock = clock.Clock

// Postinstaller runs the new image's post-install step.
type Postinstaller interface {
	Run(ctx context.Context, device string, plan *Plan) error
	// Cleanup removes what a killed Run may have left behind (a mount
	// of the new image); the engine calls it before any post-install
	// and at start.
	Cleanup(device string) error
}

// RealClock returns the wall clock.
func RealClock() Clock { return clock.Real{} }
