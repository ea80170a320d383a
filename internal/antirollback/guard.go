package antirollback

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// DefaultDevice is the kernel's TPM resource manager device.
const DefaultDevice = "/dev/tpmrm0"

// DefaultNVIndex is the NV index of the floor, in the owner range
// 0x01000000–0x013FFFFF of the TCG handle registry ("UE").
const DefaultNVIndex uint32 = 0x01005545

// store keeps the version floor: tpmFloor, or noFloor without a TPM.
type store interface {
	// Floor returns the current floor; 0 when none was ever set.
	Floor(ctx context.Context) (Version, error)
	// Raise sets the floor to v if v is higher; it never lowers it.
	Raise(ctx context.Context, v Version) error
	// ExtendPCR extends PCR pcr of the SHA-256 bank with imageSHA256 and
	// returns what attestation should expect.
	ExtendPCR(ctx context.Context, pcr int, imageSHA256 []byte) (PCRRecord, error)
	Close() error
}

// Logf logs one line.
type Logf func(format string, args ...any)

// Config says where the TPM is and how much the engine relies on it.
type Config struct {
	// Device is the TPM character device; "" means DefaultDevice.
	Device string
	// Addr, when set, is host:port of a TPM speaking raw TPM commands over
	// TCP (swtpm socket --server type=tcp); Device is then not used.
	Addr string
	// Require makes a missing or failing TPM an error: Open fails with
	// ErrNoTPM, Check fails instead of skipping. Without it, no TPM means
	// one log line and no check.
	Require bool
	// NVIndex holds the floor; 0 means DefaultNVIndex.
	NVIndex uint32
	// OwnerAuth is the owner hierarchy password used to define and write the
	// index (empty on most Linux hosts).
	OwnerAuth []byte
	// Logf receives the no-TPM line and skipped checks; nil discards.
	Logf Logf
}

// Guard is what the engine holds: Check before download, ExtendPCR at flip
// time, Raise after the new version booted and was marked good.
type Guard struct {
	f       store
	require bool
	logf    Logf
}

// Open opens the TPM cfg names. When the device does not exist or cannot
// be opened, it logs one line and returns a Guard whose check is skipped,
// unless cfg.Require is set (then an error wrapping ErrNoTPM). Open sends
// no command: a TPM that fails shows up in the calls that use it.
func Open(ctx context.Context, cfg Config) (*Guard, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	g := &Guard{require: cfg.Require, logf: logf}
	index := cfg.NVIndex
	if index == 0 {
		index = DefaultNVIndex
	}
	if index>>24 != 0x01 {
		return nil, fmt.Errorf("antirollback: NV index 0x%08x is not an NV index handle (0x01xxxxxx)", index)
	}
	if cfg.Addr != "" {
		g.f = newTPMFloor(&tcpSender{addr: cfg.Addr}, index, cfg.OwnerAuth)
		return g, nil
	}
	dev := cfg.Device
	if dev == "" {
		dev = DefaultDevice
	}
	t, err := linuxtpm.Open(dev)
	if err != nil {
		why := "cannot be opened"
		if errors.Is(err, os.ErrNotExist) {
			why = "does not exist"
		}
		if cfg.Require {
			return nil, fmt.Errorf("%w: %s %s (TPM required): %w", ErrNoTPM, dev, why, err)
		}
		logf("antirollback: no TPM: %s %s (%v); version floor disabled, rollback check skipped", dev, why, err)
		g.f = noFloor{}
		return g, nil
	}
	g.f = newTPMFloor(&deviceSender{tpm: t}, index, cfg.OwnerAuth)
	return g, nil
}

// Check refuses candidate when it is below the floor, with an error
// wrapping ErrBelowFloor, unless allowRollback: the operator asked for a
// rollback explicitly, so the refusal is logged and waived (the floor
// itself stays where it is).
//
// When the floor cannot be read (TPM errors), Check fails with an error
// wrapping ErrTPM if the TPM is required and no rollback was allowed;
// otherwise it logs why and returns nil, and the engine keeps updating.
// A candidate that has no encoding (ParseVersion) fails with ErrVersion
// once a floor is set; while the floor is 0 nothing can be below it.
func (g *Guard) Check(ctx context.Context, candidate string, allowRollback bool) error {
	if _, ok := g.f.(noFloor); ok {
		return nil
	}
	floor, err := g.f.Floor(ctx)
	if err != nil {
		if ctx.Err() != nil || (g.require && !allowRollback) {
			return fmt.Errorf("antirollback: check %s: read floor: %w", candidate, err)
		}
		g.logf("antirollback: rollback check of %s skipped, cannot read the TPM floor: %v", candidate, err)
		return nil
	}
	if floor == 0 {
		return nil
	}
	c, err := ParseVersion(candidate)
	if err != nil {
		if allowRollback {
			g.logf("antirollback: %v; allowed by the operator's rollback request", err)
			return nil
		}
		return fmt.Errorf("antirollback: check against floor %s: %w", floor, err)
	}
	if c >= floor {
		return nil
	}
	if allowRollback {
		g.logf("antirollback: %s is below the floor %s; allowed by the operator's rollback request", candidate, floor)
		return nil
	}
	return fmt.Errorf("%w: candidate %s (encoded %s) < floor %s", ErrBelowFloor, candidate, c, floor)
}

// Raise lifts the floor to booted, the version now running. Call it only
// after that version booted and was marked good (the health gate passed),
// never at download or flip time: a version that cannot boot must stay
// possible to fall back from. It never lowers the floor. Errors (TPM
// full, TPM failing) are worth a log line, never an update failure.
func (g *Guard) Raise(ctx context.Context, booted string) error {
	v, err := ParseVersion(booted)
	if err != nil {
		return fmt.Errorf("antirollback: raise: %w", err)
	}
	return g.f.Raise(ctx, v)
}

// Floor returns the current floor (0 without a TPM).
func (g *Guard) Floor(ctx context.Context) (Version, error) { return g.f.Floor(ctx) }

// ExtendPCR measures the new image at flip time: it extends PCR pcr
// (0–23) of the SHA-256 bank with imageSHA256 (32 bytes) and returns the
// record to store beside the prefs. Without a TPM it returns ErrNoTPM and
// there is nothing to record.
func (g *Guard) ExtendPCR(ctx context.Context, pcr int, imageSHA256 []byte) (PCRRecord, error) {
	return g.f.ExtendPCR(ctx, pcr, imageSHA256)
}

// Enabled reports whether a TPM is in use.
func (g *Guard) Enabled() bool {
	_, no := g.f.(noFloor)
	return !no
}

// Close releases the TPM.
func (g *Guard) Close() error { return g.f.Close() }

// noFloor is the Floor without a TPM.
type noFloor struct{}

func (noFloor) Floor(context.Context) (Version, error) { return 0, nil }
func (noFloor) Raise(context.Context, Version) error   { return nil }
func (noFloor) ExtendPCR(context.Context, int, []byte) (PCRRecord, error) {
	return PCRRecord{}, fmt.Errorf("%w: PCR not extended", ErrNoTPM)
}
func (noFloor) Close() error { return nil }
