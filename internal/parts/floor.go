package parts

import (
	"context"
	"encoding/json"

	"github.com/abupdate/update_engine/internal/antirollback"
)

// GuardFloor adapts *antirollback.Guard to the engine's Floor, and to its
// Measurer when PCR is set. An explicit rollback request is the only way
// past the floor, and the engine never asks for one on an Omaha offer.
type GuardFloor struct {
	Guard *antirollback.Guard
	PCR   int // PCR extended with the new image's hash at flip; 0 = none
}

// Measure extends PCR with the image hash and returns the record as
// JSON. Without a PCR or a TPM it records nothing.
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

// Check fails when version is below the floor.
func (g GuardFloor) Check(ctx context.Context, version string) error {
	return g.Guard.Check(ctx, version, false)
}

// Raise moves the floor up to version (never down).
func (g GuardFloor) Raise(ctx context.Context, version string) error {
	return g.Guard.Raise(ctx, version)
}
