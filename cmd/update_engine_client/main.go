// Command update_engine_client talks to the update_engine daemon over
// D-Bus. It accepts Flatcar's flags and prints Flatcar's exact `-status`
// block; run it with --help for every flag.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
