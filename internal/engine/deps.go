package engine

import (
	"context"
	"io"

	"github.com/abupdate/update_engine/internal/update"
	"github.com/abupdate/update_engine/pkg/clock"
)

// The seams: small interfaces the engine consumes, over the plain values
// of internal/update (named here too, so the engine reads in its own
// words). The real parts are in internal/parts; the daemon wires them.
type (
	CheckRequest = update.CheckRequest
	Plan         = update.Plan
	Checkpoint   = update.Checkpoint
	Applied      = update.Applied
	AppliedFile  = update.AppliedFile
	FileTarget   = update.FileTarget
	Files        = update.Files
	Target       = update.Target
	SlotAttrs    = update.SlotAttrs
)

// ServerDisabled is the SERVER value that turns updates off
// (update.ServerDisabled): no scheduled or D-Bus checks.
const ServerDisabled = update.ServerDisabled

// Checker talks Omaha.
type Checker interface {
	// Check returns the plan; when there is no update, a plan with
	// NoUpdate (carrying the answer's PollInterval) or nil; (nil, nil)
	// for a ping-only request.
	Check(ctx context.Context, req CheckRequest) (*Plan, error)
	// SendEvent reports one event; server "" means the configured one.
	SendEvent(ctx context.Context, server string, ev update.Event) error
}

// Downloader opens the payload body at offset (an HTTP Range request when
// offset > 0), failing over between plan.URLs.
type Downloader interface {
	Open(ctx context.Context, plan *Plan, offset int64) (io.ReadCloser, error)
}

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
	// never boots. The engine calls it with the slot open (openSlots).
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

// Measurer measures the new image into a TPM PCR at flip time and returns
// a record to keep in prefs (KeyPCRRecord); nil bytes = nothing to keep.
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
