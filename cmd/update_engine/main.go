// Command update_engine is the A/B update daemon: it exports
// com.coreos.update1 on D-Bus, checks Omaha for updates, streams payloads
// onto the passive slot and flips the GPT. Run it with --help for every
// flag.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

func init() {
	// The main goroutine keeps the main thread to itself, so no other
	// goroutine runs there: a goroutine that moves its thread into a
	// private mount namespace (the post-install mount) then never takes
	// the process's main thread with it.
	runtime.LockOSThread()
}

func main() {
	// A spare P, as in payload_generator apply: the passive-slot writer
	// holds its P through each O_DIRECT pwrite until sysmon takes it back.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
