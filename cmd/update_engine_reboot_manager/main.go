// Command update_engine_reboot_manager reboots a host after update_engine
// has staged an update, following REBOOT_STRATEGY from update.conf (off,
// reboot, etcd-lock, fleetlock) within the reboot window, and manages the
// fleet-wide etcd reboot lock (`lock status|unlock <id>|set-max <n>`).
// All logic lives in pkg/rebootmgr (Main).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/abupdate/update_engine/internal/version"
	"github.com/abupdate/update_engine/pkg/rebootmgr"
)

func main() {
	if version.Requested(os.Args[1:]) {
		version.Print(os.Stdout, "update_engine_reboot_manager")
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := rebootmgr.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
