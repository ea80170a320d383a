// Command update_engine_reboot_manager reboots a host after update_engine
// has staged an update, following REBOOT_STRATEGY from update.conf (off,
// reboot, etcd-lock, fleetlock) within the reboot window, and manages the
// fleet-wide etcd reboot lock (`lock status|unlock <id>|set-max <n>`).
// All logic lives in pkg/rebootmgr (Main); this command adds its
// Prometheus metrics (internal/metrics), which pkg/ cannot import.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/abupdate/update_engine/internal/metrics"
	"github.com/abupdate/update_engine/internal/version"
	"github.com/abupdate/update_engine/pkg/rebootmgr"
)

func main() {
	if version.Requested(os.Args[1:]) {
		version.Print(os.Stdout, "update_engine_reboot_manager")
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := rebootmgr.MainWithOptions(ctx, os.Args[1:], os.Stdout, os.Stderr,
		rebootmgr.Options{Metrics: metrics.NewRebootManager()})
	stop()
	os.Exit(code)
}

// The metrics must be what the reboot manager observes.
var _ rebootmgr.Metrics = (*metrics.RebootManager)(nil)
