package main

import (
	"context"
	"fmt"

	"github.com/abupdate/update_engine/internal/slot"
)

// listSlots prints the A/B slots of --disk as a table. It only reads the
// disk (a damaged GPT copy is read around, not repaired) and needs no
// daemon.
func (r *runner) listSlots(ctx context.Context) int {
	if err := ctx.Err(); err != nil {
		return exitFailed
	}
	slots, next, err := slot.List(r.o.disk)
	if err != nil {
		fmt.Fprintf(r.stderr, "update_engine_client: %v\n", err)
		return exitFailed
	}
	if err := slot.WriteTable(r.stdout, slots, next); err != nil {
		fmt.Fprintf(r.stderr, "update_engine_client: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// simulateBoot spends a boot try as GRUB gptprio would and prints the
// chosen slot.
func (r *runner) simulateBoot(ctx context.Context) int {
	d, err := slot.Open(ctx, r.o.disk, slot.Options{Booted: "A"})
	if err != nil {
		fmt.Fprintf(r.stderr, "update_engine_client: %v\n", err)
		return exitFailed
	}
	name, err := d.SimulateBoot(ctx)
	if err != nil {
		fmt.Fprintf(r.stderr, "update_engine_client: %v\n", err)
		return exitFailed
	}
	fmt.Fprintln(r.stdout, name)
	return exitOK
}
