package parts

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"time"

	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/internal/update"
	"github.com/abupdate/update_engine/pkg/cgroup"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/payload"
)

// ErrNoPayloadKey: no public key to verify payloads with (the key file is
// missing, unreadable or holds no RSA key), so the payload is refused
// before the first write. Code 18 (DownloadPayloadPubKeyVerificationError).
var ErrNoPayloadKey = errors.New("engine: no payload public key: payload refused")

// PayloadApplier adapts pkg/payload to the engine's Applier. Checkpoints are the
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
	// TargetSize, when > 0, bounds the payload's extents: the slot size.
	TargetSize int64
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

// keys loads the verification keys for one apply; see Keys.
func (a PayloadApplier) keys() ([]*rsa.PublicKey, error) {
	var keys []*rsa.PublicKey
	var err error
	if a.Keys != nil {
		keys, err = a.Keys()
	}
	switch {
	case err != nil:
		return nil, status.WithCode(omaha.DownloadPayloadPubKeyVerificationError, fmt.Errorf("%w: %w", ErrNoPayloadKey, err))
	case len(keys) == 0 && !a.InsecureAllowUnsigned:
		return nil, status.WithCode(omaha.DownloadPayloadPubKeyVerificationError, ErrNoPayloadKey)
	}
	return keys, nil
}

// Ready fails unless a key loads (or unsigned payloads are allowed).
func (a PayloadApplier) Ready() error {
	_, err := a.keys()
	return err
}

// Apply applies the payload r onto dst (src is the booted slot, for
// deltas), resuming from a checkpoint when from is set, and verifies it.
func (a PayloadApplier) Apply(ctx context.Context, plan *update.Plan, r io.Reader, src io.ReaderAt, dst update.Target, files update.Files, from *update.Checkpoint, save func(update.Checkpoint) error) (update.Applied, error) {
	keys, err := a.keys()
	if err != nil {
		return update.Applied{}, err
	}
	o := payload.Options{
		Keys: keys, Source: src, Partition: a.Partition, Workers: a.Workers,
		RequireVersion: a.RequireVersion, CheckpointBytes: a.CheckpointBytes,
		Direct: dst.Direct(), TargetSize: a.TargetSize,
		WorkerInit: a.workerInit(),
		OpDuration: a.OpDuration,
		Checkpoint: func(cp *payload.Checkpoint) error {
			b, err := json.Marshal(cp)
			if err != nil {
				return err
			}
			return save(update.Checkpoint{Offset: cp.Offset, State: b})
		},
	}
	// The apply's memory limit is the daemon's while it runs (it does
	// little else meanwhile), then the one it had: without it, freed
	// buffers stay until the heap doubles.
	prev := int64(-1)
	o.MemoryLimit = func(n int64) { prev = debug.SetMemoryLimit(n) }
	defer func() {
		if prev >= 0 {
			debug.SetMemoryLimit(prev)
		}
	}()
	if files != nil {
		o.Files = func(name string) (payload.FileTarget, error) {
			f, err := files(name)
			if f == nil || err != nil {
				return nil, err // no typed nil
			}
			return f, nil
		}
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
			return update.Applied{}, status.WithCode(omaha.DownloadStateInitializationError, fmt.Errorf("%w: %v", payload.ErrBadCheckpoint, jerr))
		}
		res, err = payload.Resume(ctx, &cp, r, dst, o)
	}
	if err != nil {
		return update.Applied{}, err
	}
	applied := update.Applied{Size: res.Size, SHA256: res.SHA256, PartitionHash: res.PartitionHash}
	for _, f := range res.Files {
		applied.Files = append(applied.Files, update.AppliedFile{Name: f.Name, Size: f.Size, SHA256: f.SHA256})
	}
	return applied, nil
}
