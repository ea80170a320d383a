package main

import (
	"context"
	"fmt"
	"time"

	"github.com/abupdate/update_engine/pkg/update1"
)

// done reports whether -update stops at op: Flatcar stops at IDLE (no
// update, or a failed attempt) and at UPDATED_NEED_REBOOT.
func done(op string) bool {
	return op == update1.StatusIdle || op == update1.StatusUpdatedNeedReboot
}

// runUpdate is Flatcar's -update: AttemptUpdate, then poll GetStatus until
// done. With a bar it also redraws on every StatusUpdate signal so the bar
// moves between polls.
func (r *runner) runUpdate(ctx context.Context, c *update1.Client) error {
	bar := r.o.progress == "bar" || (r.o.progress == "auto" && isTerminal(r.stdout))
	var sigs <-chan update1.Status
	if bar {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch, err := watch(wctx, c)
		if err != nil {
			return err
		}
		sigs = ch
	}
	if err := r.attempt(ctx, c); err != nil {
		return err
	}
	fmt.Fprintln(r.stderr, "Initiating update check and install.")
	st, err := r.poll(ctx, c, bar, sigs)
	if err != nil {
		return err
	}
	if st.NeedsReboot() {
		fmt.Fprintln(r.stderr, "Update succeeded -- reboot needed.")
		return nil
	}
	// IDLE is both "no update" and "failed"; Flatcar exits 0 either way.
	// Our daemon's detail says which (LastError describes the last attempt).
	if d, err := c.Detail(ctx); err == nil && d.LastError != 0 {
		fmt.Fprintf(r.stderr, "Update failed: %s %s\n", d.LastErrorName, d.LastErrorMessage)
		return nil
	}
	fmt.Fprintln(r.stderr, "No update available.")
	return nil
}

// poll prints the status (block or bar) every poll interval until done.
func (r *runner) poll(ctx context.Context, c *update1.Client, bar bool, sigs <-chan update1.Status) (update1.Status, error) {
	tick := time.NewTicker(r.o.pollInterval)
	defer tick.Stop()
	for {
		st, err := c.GetStatus(ctx)
		if err != nil {
			return st, err
		}
		if !bar {
			fmt.Fprint(r.stdout, formatStatus(st))
		} else {
			fmt.Fprintf(r.stdout, "\r%s", progressBar(st, 30))
			if done(st.CurrentOperation) {
				fmt.Fprintln(r.stdout)
				fmt.Fprint(r.stdout, formatStatus(st))
			}
		}
		if done(st.CurrentOperation) {
			return st, nil
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return st, ctx.Err()
			case s, ok := <-sigs:
				if !ok {
					sigs = nil
					continue
				}
				fmt.Fprintf(r.stdout, "\r%s", progressBar(s, 30))
			case <-tick.C:
				break wait
			}
		}
	}
}
