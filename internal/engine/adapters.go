package engine

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/abupdate/update_engine/internal/antirollback"
	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/pkg/cgroup"
	"github.com/abupdate/update_engine/pkg/payload"
)

// ErrNoPayloadKey: no public key to verify payloads with (the key file is
// missing, unreadable or holds no RSA key), so the payload is refused
// before the first write. Code 18 (DownloadPayloadPubKeyVerificationError).
var ErrNoPayloadKey = errors.New("engine: no payload public key: payload refused")

// PayloadApplier adapts pkg/payload to Applier. Checkpoints are the
// payload package's Checkpoint as JSON. The offered version (Plan.Version)
// must be the version signed inside the payload, when it carries one.
type PayloadApplier struct {
	// Keys returns the keys that verify payloads. It is called at every
	// Apply (fresh or resumed), so a key installed or bind-mounted after
	// start is used. An error, a nil Keys or no key refuses the payload
	// with ErrNoPayloadKey, unless InsecureAllowUnsigned and no error.
	Keys func() ([]*rsa.PublicKey, error)
	// InsecureAllowUnsigned applies payloads without checking signatures
	// when Keys finds no key (development only).
	InsecureAllowUnsigned bool
	// RequireVersion refuses payloads that carry no signed version, for
	// hosts where an anti-rollback floor is enforced on Plan.Version.
	RequireVersion bool
	// CheckpointBytes between checkpoints (0 = after every operation).
	CheckpointBytes int64
	Workers         int
	// Partition names the payload partition for the slot ("" = root).
	Partition string
	// DecodeNice, when > 0, is the nice value of the decoding threads, so
	// decompression yields the CPU to the host's workloads.
	DecodeNice int
	// OpDuration, if set, receives each operation's type and the time
	// it took (payload.Options.OpDuration): the operation_duration_seconds
	// metric.
	OpDuration func(opType string, d time.Duration)
}

func (a PayloadApplier) workerInit() func() {
	if a.DecodeNice <= 0 {
		return nil
	}
	return func() { _ = cgroup.NiceThread(a.DecodeNice) } // best effort
}

// directer is a Target that knows it was opened O_DIRECT.
type directer interface{ Direct() bool }

// keys loads the verification keys for one apply; see Keys.
func (a PayloadApplier) keys() ([]*rsa.PublicKey, error) {
	var keys []*rsa.PublicKey
	var err error
	if a.Keys != nil {
		keys, err = a.Keys()
	}
	switch {
	case err != nil:
		return nil, status.WithCode(status.DownloadPayloadPubKeyVerificationError, fmt.Errorf("%w: %w", ErrNoPayloadKey, err))
	case len(keys) == 0 && !a.InsecureAllowUnsigned:
		return nil, status.WithCode(status.DownloadPayloadPubKeyVerificationError, ErrNoPayloadKey)
	}
	return keys, nil
}

// Ready implements Applier: a key loads (or unsigned payloads are
// allowed).
func (a PayloadApplier) Ready() error {
	_, err := a.keys()
	return err
}

// Apply implements Applier.
func (a PayloadApplier) Apply(ctx context.Context, plan *Plan, r io.Reader, src io.ReaderAt, dst Target, files Files, from *Checkpoint, save func(Checkpoint) error) (Applied, error) {
	keys, err := a.keys()
	if err != nil {
		return Applied{}, err
	}
	o := payload.Options{
		Keys: keys, Source: src, Partition: a.Partition, Workers: a.Workers,
		RequireVersion:  a.RequireVersion,
		CheckpointBytes: a.CheckpointBytes,
		WorkerInit:      a.workerInit(),
		OpDuration:      a.OpDuration,
		Checkpoint: func(cp *payload.Checkpoint) error {
			b, err := json.Marshal(cp)
			if err != nil {
				return err
			}
			return save(Checkpoint{Offset: cp.Offset, State: b})
		},
	}
	if d, ok := dst.(directer); ok {
		o.Direct = d.Direct()
	}
	if files != nil {
		o.Files = func(name string) (payload.FileTarget, error) {
			f, err := files(name)
			if f == nil || err != nil {
				return nil, err // no typed nil
			}
			return f, nil
		}
	}
	if sr, ok := src.(interface{ Size() int64 }); ok {
		o.TargetSize = sr.Size()
	}
	if plan != nil {
		o.ExpectedSize, o.ExpectedSHA256, o.Version = plan.Size, plan.SHA256, plan.Version
	}
	var res *payload.Result
	if from == nil {
		res, err = payload.Apply(ctx, r, dst, o)
	} else {
		var cp payload.Checkpoint
		if jerr := json.Unmarshal(from.State, &cp); jerr != nil {
			return Applied{}, status.WithCode(status.DownloadStateInitializationError, fmt.Errorf("%w: %v", payload.ErrBadCheckpoint, jerr))
		}
		res, err = payload.Resume(ctx, &cp, r, dst, o)
	}
	if err != nil {
		return Applied{}, err
	}
	applied := Applied{Size: res.Size, SHA256: res.SHA256, PartitionHash: res.PartitionHash}
	for _, f := range res.Files {
		applied.Files = append(applied.Files, AppliedFile{Name: f.Name, Size: f.Size, SHA256: f.SHA256})
	}
	return applied, nil
}

// DiskSlots adapts *slot.Disk to Slots; writes to the passive slot go
// through Limiter's cgroup when it is set.
type DiskSlots struct {
	*slot.Disk
	Limiter *cgroup.Limiter // nil = unthrottled
}

// limitedTarget throttles writes; reads (the payload's read-back of the new
// partition) go straight to the slot.
type limitedTarget struct {
	*cgroup.Writer
	slot *slot.Writer
}

func (t limitedTarget) Direct() bool { return t.slot.Direct() }

func (t limitedTarget) ReadAt(p []byte, off int64) (int, error) { return t.slot.ReadAt(p, off) }

// Attrs implements Slots.
func (d DiskSlots) Attrs(ctx context.Context) (map[string]SlotAttrs, error) {
	m, err := d.Disk.Attrs(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]SlotAttrs, len(m))
	for k, a := range m {
		out[k] = SlotAttrs(a)
	}
	return out, nil
}

// OpenPassive implements Slots.
func (d DiskSlots) OpenPassive(ctx context.Context) (Target, error) {
	w, err := d.Disk.OpenPassive(ctx)
	if err != nil {
		return nil, err
	}
	if d.Limiter == nil {
		return w, nil
	}
	return limitedTarget{Writer: d.Limiter.WriterAt(w), slot: w}, nil
}

// GuardFloor adapts *antirollback.Guard to Floor (and Measurer when PCR
// is set). An explicit rollback request is the only way past the floor,
// and the engine never asks for one on an Omaha offer.
type GuardFloor struct {
	Guard *antirollback.Guard
	PCR   int // PCR extended with the new image's hash at flip; 0 = none
}

// Measure implements Measurer: extend PCR with the image hash and return
// the record as JSON. Without a PCR or a TPM it records nothing.
func (g GuardFloor) Measure(ctx context.Context, imageSHA256 []byte) ([]byte, error) {
	if g.PCR == 0 || !g.Guard.Enabled() {
		return nil, nil
	}
	rec, err := g.Guard.ExtendPCR(ctx, g.PCR, imageSHA256)
	if err != nil {
		return nil, err
	}
	return json.Marshal(rec)
}

// Check implements Floor.
func (g GuardFloor) Check(ctx context.Context, version string) error {
	return g.Guard.Check(ctx, version, false)
}

// Raise implements Floor.
func (g GuardFloor) Raise(ctx context.Context, version string) error {
	return g.Guard.Raise(ctx, version)
}
