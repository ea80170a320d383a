package main

import (
	"context"
	"fmt"
)

// listSlots prints the A/B slots of --disk. It opens the disk read-only.
func (r *runner) listSlots(ctx context.Context) int {
	fmt.Fprintf(r.stderr, "update_engine_client: --slots is not available in this build (internal/slot missing)\n")
	return exitFailed
}
