package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/abupdate/update_engine/internal/version"
	"github.com/abupdate/update_engine/pkg/clock"
	"github.com/abupdate/update_engine/pkg/update1"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // the daemon refused or a call failed; also no bus, or no daemon after the retries (Flatcar)
	exitUsage  = 2 // bad flags
)

// Flatcar's client tries 4 times (--connect-tries), 10 s apart, to reach
// update_engine before it gives up.
const (
	defaultConnectTries = 4
	connectRetry        = 10 * time.Second
)

// sleep waits d or until ctx ends (a variable so tests need not wait).
var sleep = func(ctx context.Context, d time.Duration) error { return clock.Sleep(ctx, nil, d) }

type options struct {
	resetStatus, status, checkForUpdate, update, watch bool
	json, rollback, powerwash, slots, simulateBoot     bool
	version                                            bool
	bus, disk, progress, channel                       string
	pollInterval                                       time.Duration
	appVersion, omahaURL                               string // ChromeOS AttemptUpdate(s,s)
	interactive                                        bool
	connectTries                                       int
}

const usageHead = `Usage: update_engine_client [flags]

Talks to the update_engine daemon (D-Bus name com.coreos.update1). Flags may
be written -flag or --flag. When several actions are given, the first in this
order runs (Flatcar's order): -reset_status, -status, -check_for_update,
-update, -watch_for_updates; then our own --rollback, --channel, --json,
--slots, --simulate-boot. With no action it prints "Done." and exits 0.

Flatcar-compatible actions:
  -reset_status       leave UPDATE_STATUS_UPDATED_NEED_REBOOT (back to IDLE)
  -status             print the status block:
                        LAST_CHECKED_TIME=<unix time>
                        PROGRESS=<0.000000..1.000000>
                        CURRENT_OP=<UPDATE_STATUS_...>
                        NEW_VERSION=<version or 0.0.0>
                        NEW_SIZE=<bytes>
  -check_for_update   ask for an update check and return at once
  -update             ask for an update check and wait until the daemon is
                      idle again (no update, or failure) or needs a reboot;
                      prints the status block at every poll, or a live
                      progress bar when stdout is a terminal
  -watch_for_updates  print the status block of every StatusUpdate signal
                      until interrupted

Our own:
  --json              print the detailed status as JSON (also with -status)
  --rollback          make the other slot boot next (root only)
  --channel NAME      set the update channel / Omaha track (root only)
  --disk DEV --slots  list the A/B slots of DEV, read-only; needs no daemon
  --disk DEV --simulate-boot
                      do what GRUB gptprio does at boot on DEV (pick the next
                      slot, spend one of its tries) and print the slot; for
                      demos and tests on image files; needs no daemon

ChromeOS request flags (with -check_for_update or -update):
  -app_version V      ask for version V (ChromeOS AttemptUpdate(s app_version, s omaha_url))
  -omaha_url URL      use this Omaha server for this check; the daemon refuses
                      it unless started with --allow-omaha-url
  -interactive        accepted; requests over D-Bus are always interactive
                      (installsource="ondemandupdate"), so =false is refused

Connection and output:
  --bus ADDR          D-Bus address (default: $DBUS_SYSTEM_BUS_ADDRESS, else
                      the system bus)
  --progress MODE     -update output: auto (bar on a terminal), bar, plain
  --poll-interval D   -update poll interval (default 5s, as Flatcar)

When update_engine is not on the bus it tries 4 times (--connect-tries),
10 s apart, as Flatcar's client does. Glog flags (-v, -logtostderr, -alsologtostderr,
-stderrthreshold, -minloglevel, -log_dir, -vmodule) are accepted and ignored.

Exit codes: 0 ok; 1 the call failed or was refused, the bus is unreachable,
or update_engine is not running; 2 bad flags.

All flags:
`

func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("update_engine_client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.resetStatus, "reset_status", false, "reset an UPDATED_NEED_REBOOT status to IDLE")
	fs.BoolVar(&o.status, "status", false, "print the current status block")
	fs.BoolVar(&o.checkForUpdate, "check_for_update", false, "initiate an update check and return")
	fs.BoolVar(&o.update, "update", false, "initiate an update check and wait for the result")
	fs.BoolVar(&o.watch, "watch_for_updates", false, "print every StatusUpdate signal")
	fs.BoolVar(&o.json, "json", false, "print the detailed status as JSON")
	fs.BoolVar(&o.rollback, "rollback", false, "boot the other slot next (root only)")
	fs.BoolVar(&o.powerwash, "powerwash", false, "with --rollback: ask for a powerwash (ChromeOS; recorded only)")
	fs.StringVar(&o.channel, "channel", "", "set the update channel (Omaha track) (root only)")
	fs.BoolVar(&o.slots, "slots", false, "list the A/B slots of --disk (read-only)")
	fs.BoolVar(&o.simulateBoot, "simulate-boot", false, "pick the next boot slot of --disk as GRUB would, spending a try (writes the GPT)")
	fs.StringVar(&o.disk, "disk", "", "disk device or image file for --slots / --simulate-boot")
	fs.StringVar(&o.bus, "bus", "", "D-Bus address (default $DBUS_SYSTEM_BUS_ADDRESS or the system bus)")
	fs.StringVar(&o.progress, "progress", "auto", "-update output: auto, bar or plain")
	fs.DurationVar(&o.pollInterval, "poll-interval", 5*time.Second, "-update poll interval")
	fs.StringVar(&o.appVersion, "app_version", "", "with -check_for_update/-update: the version to ask for (ChromeOS)")
	fs.StringVar(&o.omahaURL, "omaha_url", "", "with -check_for_update/-update: the Omaha server for this check (ChromeOS)")
	fs.IntVar(&o.connectTries, "connect-tries", defaultConnectTries, "tries to reach update_engine on the bus, 10 s apart")
	fs.BoolVar(&o.version, "version", false, "print this program's version and exit")
	fs.BoolVar(&o.interactive, "interactive", true, "mark the request interactive (always true over D-Bus)")
	// Accepted and ignored, as gflags/glog-based tools are called with them.
	fs.Bool("logtostderr", true, "glog: accepted (logs always go to stderr)")
	fs.Bool("alsologtostderr", false, "glog: accepted and ignored")
	fs.Int("v", 0, "glog: verbosity, accepted and ignored")
	fs.Int("stderrthreshold", 2, "glog: accepted and ignored")
	fs.Int("minloglevel", 0, "glog: accepted and ignored")
	fs.String("log_dir", "", "glog: accepted and ignored")
	fs.String("vmodule", "", "glog: accepted and ignored")
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags only; see --help)", fs.Arg(0))
	}
	switch o.progress {
	case "auto", "bar", "plain":
	default:
		return nil, fmt.Errorf("--progress: %q is not auto, bar or plain", o.progress)
	}
	if o.pollInterval <= 0 {
		return nil, fmt.Errorf("--poll-interval must be positive, got %v", o.pollInterval)
	}
	if o.connectTries < 1 {
		return nil, fmt.Errorf("--connect-tries must be at least 1, got %d", o.connectTries)
	}
	if !o.interactive {
		return nil, errors.New("-interactive=false: update_engine treats every D-Bus request as interactive (installsource=\"ondemandupdate\")")
	}
	if (o.slots || o.simulateBoot) && o.disk == "" {
		return nil, errors.New("--slots and --simulate-boot need --disk DEV")
	}
	return o, nil
}

// Main runs the client with args (without the program name) and returns
// the exit code. Logs go to stderr, results to stdout.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "update_engine_client: %v\n", err)
		return exitUsage
	}
	if o.version {
		version.Print(stdout, "update_engine_client")
		return exitOK
	}
	r := &runner{o: o, stdout: stdout, stderr: stderr}
	switch {
	case o.resetStatus:
		return r.withClient(ctx, r.resetStatus)
	case o.status:
		return r.withClient(ctx, r.printStatus)
	case o.checkForUpdate:
		return r.withClient(ctx, r.checkForUpdate)
	case o.update:
		return r.withClient(ctx, r.runUpdate)
	case o.watch:
		return r.withClient(ctx, r.watchForUpdates)
	case o.rollback:
		return r.withClient(ctx, r.doRollback)
	case o.channel != "":
		return r.withClient(ctx, r.setChannel)
	case o.json:
		return r.withClient(ctx, r.printStatus)
	case o.slots:
		return r.listSlots(ctx)
	case o.simulateBoot:
		return r.simulateBoot(ctx)
	}
	fmt.Fprintln(stderr, "Done.")
	return exitOK
}

type runner struct {
	o              *options
	stdout, stderr io.Writer
}

// withClient connects, runs f and maps its error to an exit code with a
// message a person can act on.
func (r *runner) withClient(ctx context.Context, f func(context.Context, *update1.Client) error) int {
	addr := r.o.bus
	if addr == "" {
		addr = update1.SystemBusAddress()
	}
	c, err := update1.Dial(ctx, addr)
	if err == nil {
		defer c.Close()
		// As Flatcar's GetProxy: 4 tries, 10 s apart, while nobody owns
		// the name (update_engine starting, or restarting after a crash).
		for try := 1; ; try++ {
			err = f(ctx, c)
			if !errors.Is(err, update1.ErrNotRunning) || try >= r.o.connectTries {
				break
			}
			fmt.Fprintf(r.stderr, "update_engine_client: update_engine is not on the bus; retrying in %v (try %d/%d)\n",
				connectRetry, try+1, r.o.connectTries)
			if serr := sleep(ctx, connectRetry); serr != nil {
				break
			}
		}
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, update1.ErrNoBus):
		fmt.Fprintf(r.stderr, "update_engine_client: cannot reach the D-Bus bus at %s: %v\n", addr, err)
		return exitFailed
	case errors.Is(err, update1.ErrNotRunning):
		fmt.Fprintf(r.stderr, "update_engine_client: giving up: update_engine is not running on %s (nobody owns %s).\n"+
			"Start it with: systemctl start update-engine.service\n", addr, update1.Name)
		return exitFailed
	case ctx.Err() != nil:
		fmt.Fprintf(r.stderr, "update_engine_client: interrupted\n")
		return exitFailed
	default:
		fmt.Fprintf(r.stderr, "update_engine_client: %v\n", err)
		return exitFailed
	}
}

// formatStatus is Flatcar's -status block, byte for byte.
func formatStatus(st update1.Status) string {
	return fmt.Sprintf("LAST_CHECKED_TIME=%d\nPROGRESS=%f\nCURRENT_OP=%s\nNEW_VERSION=%s\nNEW_SIZE=%d\n",
		st.LastCheckedTime, st.Progress, st.CurrentOperation, st.NewVersion, st.NewSize)
}

func (r *runner) printStatus(ctx context.Context, c *update1.Client) error {
	if r.o.json {
		s, err := c.StatusJSON(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(r.stdout, s)
		return nil
	}
	st, err := c.GetStatus(ctx)
	if err != nil {
		return err
	}
	fmt.Fprint(r.stdout, formatStatus(st))
	return nil
}

func (r *runner) resetStatus(ctx context.Context, c *update1.Client) error {
	return c.ResetStatus(ctx)
}

// attempt asks for a check: Flatcar's AttemptUpdate(), or the ChromeOS
// AttemptUpdate(s,s) when -app_version or -omaha_url is given.
func (r *runner) attempt(ctx context.Context, c *update1.Client) error {
	if r.o.appVersion != "" || r.o.omahaURL != "" {
		return c.AttemptUpdateWith(ctx, r.o.appVersion, r.o.omahaURL)
	}
	return c.AttemptUpdate(ctx)
}

func (r *runner) checkForUpdate(ctx context.Context, c *update1.Client) error {
	if err := r.attempt(ctx, c); err != nil {
		return err
	}
	fmt.Fprintln(r.stderr, "Initiating update check and install.")
	return nil
}

func (r *runner) doRollback(ctx context.Context, c *update1.Client) error {
	if err := c.AttemptRollback(ctx, r.o.powerwash); err != nil {
		return err
	}
	fmt.Fprintln(r.stderr, "Rollback requested: the other slot boots next. Reboot to use it.")
	return nil
}

func (r *runner) setChannel(ctx context.Context, c *update1.Client) error {
	if err := c.SetChannel(ctx, r.o.channel); err != nil {
		return err
	}
	fmt.Fprintf(r.stderr, "Channel set to %q; the next check uses it.\n", r.o.channel)
	return nil
}

// watch delivers update_engine's StatusUpdate signals as the reboot
// manager sees them: only the current owner of com.coreos.update1 is
// believed and UPDATED_NEED_REBOOT is confirmed with GetStatus (see
// update1.Client.Watch). It keeps up to 64 for a slow terminal.
func watch(ctx context.Context, c *update1.Client) (<-chan update1.Status, error) {
	c.Queue = 64
	return c.Watch(ctx)
}

func (r *runner) watchForUpdates(ctx context.Context, c *update1.Client) error {
	ch, err := watch(ctx, c)
	if err != nil {
		return err
	}
	// Fail early, with the not-running message, if nobody is there.
	if _, err := c.GetStatus(ctx); err != nil {
		return err
	}
	fmt.Fprintln(r.stderr, "Watching for StatusUpdate signals (Ctrl-C to stop).")
	for st := range ch {
		fmt.Fprint(r.stdout, formatStatus(st))
		fmt.Fprintln(r.stdout)
	}
	return nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressBar renders one line for a terminal, e.g.
// "[##########----------]  50.0%  DOWNLOADING  3850.0.0  12.3 MiB".
func progressBar(st update1.Status, width int) string {
	p := min(max(st.Progress, 0), 1)
	n := int(p*float64(width) + 0.5)
	op := strings.TrimPrefix(st.CurrentOperation, update1.StatusPrefix)
	s := fmt.Sprintf("[%s%s] %5.1f%%  %-20s", strings.Repeat("#", n), strings.Repeat("-", width-n), p*100, op)
	if st.NewVersion != "" && st.NewVersion != "0.0.0" {
		s += "  " + st.NewVersion
	}
	if st.NewSize > 0 {
		s += fmt.Sprintf("  %.1f MiB", float64(st.NewSize)/(1<<20))
	}
	return s
}
