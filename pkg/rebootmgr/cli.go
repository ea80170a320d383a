package rebootmgr

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/abupdate/update_engine/pkg/clock"
	"github.com/abupdate/update_engine/pkg/rebootmgr/etcdlock"
	"github.com/abupdate/update_engine/pkg/rebootmgr/fleetlock"
	"github.com/abupdate/update_engine/pkg/update1"
)

const usage = `usage: update_engine_reboot_manager <command> [flags]

commands:
  run                       manage reboots after updates (the daemon, like locksmithd)
  lock [flags] <verb>       locksmithctl's verbs on the etcd reboot lock:
    status                  available slots, max, holders (how long each has held its
                            slot; "stale" past -stale-after: release it with unlock <id>)
    lock [<id>]             take a slot for this machine or machine <id>
    unlock [<id>]           release the slot of this machine or machine <id>
    reboot                  take this machine's slot, then reboot (root only)
    send-need-reboot        emit update_engine's UPDATED_NEED_REBOOT signal (tests a setup)
    set-max <n>             set the number of hosts that may reboot at once

Settings come from update.conf (/etc/flatcar/update.conf, /etc/coreos/update.conf,
/usr/share/flatcar/update.conf, /usr/share/coreos/update.conf; first file holding a
key wins), then from the environment as locksmithd takes them (REBOOT_STRATEGY,
LOCKSMITHD_REBOOT_WINDOW_START/_LENGTH, LOCKSMITHD_ENDPOINT, LOCKSMITHD_GROUP,
LOCKSMITHD_ETCD_CAFILE/_CERTFILE/_KEYFILE/_USERNAME/_PASSWORD, LOCKSMITHD_ETCD_API;
lock commands also LOCKSMITHCTL_<same>, as locksmithctl), then from flags.
Run "update_engine_reboot_manager <command> -h" for its flags.
`

// Main is the update_engine_reboot_manager command line. It returns the
// process exit code: 0 ok, 1 failure, 2 usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return MainWithOptions(ctx, args, stdout, stderr, Options{})
}

// MainWithOptions is Main with what only the command can give (metrics).
func MainWithOptions(ctx context.Context, args []string, stdout, stderr io.Writer, o Options) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return mainRun(ctx, args[1:], stderr, o)
	case "lock":
		return mainLock(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "unknown command %q\n%s", args[0], usage)
	return 2
}

// settings are the flags shared by run and lock.
type settings struct {
	fs                  *flag.FlagSet
	ctl                 bool // the lock command: LOCKSMITHCTL_* beat LOCKSMITHD_*
	configFiles         string
	strategy            string
	windowStart, length string
	fleetLockURL        string
	lockTTL             time.Duration
	keyFlags            map[string]*string // flag name → its update.conf key's value
}

// keyFlags are the flags that set one update.conf key each (locksmith's
// global flags, and ours).
var keyFlags = []struct{ name, key, help string }{
	{"endpoint", "LOCKSMITHD_ENDPOINT", "etcd endpoints, comma list"},
	{"group", "LOCKSMITHD_GROUP", "reboot lock group"},
	{"etcd-cafile", "LOCKSMITHD_ETCD_CAFILE", "etcd CA certificate (PEM)"},
	{"etcd-certfile", "LOCKSMITHD_ETCD_CERTFILE", "etcd client certificate (PEM)"},
	{"etcd-keyfile", "LOCKSMITHD_ETCD_KEYFILE", "etcd client key (PEM)"},
	{"etcd-username", "LOCKSMITHD_ETCD_USERNAME", "etcd user"},
	{"etcd-password", "LOCKSMITHD_ETCD_PASSWORD", "etcd password"},
	{"etcd-api", "LOCKSMITHD_ETCD_API", "etcd store of the lock: v3, or v2 (locksmithd's, for a mixed fleet)"},
}

func newSettings(name string, stderr io.Writer) *settings {
	s := &settings{fs: flag.NewFlagSet(name, flag.ContinueOnError), ctl: name == "lock", keyFlags: map[string]*string{}}
	s.fs.SetOutput(stderr)
	s.fs.StringVar(&s.configFiles, "config", strings.Join(ConfigFiles, ","), "update.conf files, in search order (comma list)")
	for _, f := range keyFlags {
		s.keyFlags[f.name] = s.fs.String(f.name, "", f.help+" (update.conf "+f.key+")")
	}
	return s
}

// environKeys are the update.conf keys that the environment may also set,
// as locksmithd takes them from the environment systemd gives it.
var environKeys = []string{
	"REBOOT_STRATEGY", "LOCKSMITHD_REBOOT_WINDOW_START", "LOCKSMITHD_REBOOT_WINDOW_LENGTH",
	"REBOOT_WINDOW_START", "REBOOT_WINDOW_LENGTH", "LOCKSMITHD_ENDPOINT", "LOCKSMITHD_GROUP",
	"LOCKSMITHD_ETCD_CAFILE", "LOCKSMITHD_ETCD_CERTFILE", "LOCKSMITHD_ETCD_KEYFILE",
	"LOCKSMITHD_ETCD_USERNAME", "LOCKSMITHD_ETCD_PASSWORD", "LOCKSMITHD_ETCD_API",
	"FLEETLOCK_URL", "REBOOT_LOCK_TTL",
}

var windowKeys = []string{"LOCKSMITHD_REBOOT_WINDOW_START", "LOCKSMITHD_REBOOT_WINDOW_LENGTH", "REBOOT_WINDOW_START", "REBOOT_WINDOW_LENGTH"}

// environ returns the settings of the process environment: the keys
// above, and for the lock command locksmithctl's LOCKSMITHCTL_ names,
// which beat the LOCKSMITHD_ ones.
func (s *settings) environ() Env {
	out := Env{}
	for _, k := range environKeys {
		if v := os.Getenv(k); v != "" {
			out[k] = v
		}
		if rest, ok := strings.CutPrefix(k, "LOCKSMITHD_"); ok && s.ctl {
			if v := os.Getenv("LOCKSMITHCTL_" + rest); v != "" {
				out[k] = v
			}
		}
	}
	return out
}

// overlay sets env's keys from over; a window in over replaces env's
// whole window (legacy keys too).
func overlay(env, over Env) {
	for _, k := range windowKeys {
		if _, ok := over[k]; ok {
			for _, w := range windowKeys {
				delete(env, w)
			}
			break
		}
	}
	for k, v := range over {
		env[k] = v
	}
}

// config loads update.conf, then the environment, then the flags that
// were set. Lines of update.conf that do not parse, and unknown keys, are
// logged to warn and skipped.
func (s *settings) config(warn io.Writer) (Config, error) {
	env, warns, err := LoadEnv(SplitEndpoints(s.configFiles))
	if err != nil {
		return Config{}, err
	}
	for _, w := range warns {
		fmt.Fprintf(warn, "warning: %v\n", w)
	}
	overlay(env, s.environ())
	set := map[string]bool{}
	s.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	flags := Env{}
	for _, f := range keyFlags {
		if set[f.name] {
			flags[f.key] = *s.keyFlags[f.name]
		}
	}
	if set["strategy"] {
		flags["REBOOT_STRATEGY"] = s.strategy
	}
	if set["window-start"] || set["window-length"] {
		flags["LOCKSMITHD_REBOOT_WINDOW_START"] = s.windowStart
		flags["LOCKSMITHD_REBOOT_WINDOW_LENGTH"] = s.length
	}
	if set["fleetlock-url"] {
		flags["FLEETLOCK_URL"] = s.fleetLockURL
	}
	if set["lock-ttl"] {
		flags["REBOOT_LOCK_TTL"] = s.lockTTL.String()
	}
	overlay(env, flags)
	return ConfigFromEnv(env)
}

// lockCommandTimeout bounds a lock command's etcd calls (a variable for
// tests).
var lockCommandTimeout = 15 * time.Second

func dialEtcd(c Config) (*clientv3.Client, error) {
	tlsConf, err := c.EtcdTLS()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		TLS:         tlsConf,
		Endpoints:   c.Endpoints,
		DialTimeout: 5 * time.Second,
		// A member that hangs (not closed, just silent) is dropped after
		// DialKeepAliveTime+Timeout and the client moves on to another.
		DialKeepAliveTime:    etcdlock.KeepAliveTime,
		DialKeepAliveTimeout: etcdlock.KeepAliveTimeout,
		Username:             c.EtcdUsername,
		Password:             c.EtcdPassword,
		Logger:               zap.NewNop(), // errors reach us as return values
	})
	if err != nil {
		return nil, fmt.Errorf("rebootmgr: etcd %v: %w", c.Endpoints, err)
	}
	return cli, nil
}

// openSemaphores returns the semaphore client for c's etcd API (v3 over
// gRPC, or the v2 keys API over HTTP) and a func that releases it.
func openSemaphores(c Config, now func() time.Time) (etcdlock.Semaphores, func(), error) {
	if c.EtcdAPI == EtcdAPIv2 {
		tlsConf, err := c.EtcdTLS()
		if err != nil {
			return nil, nil, err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsConf
		v2 := &etcdlock.V2Client{Endpoints: c.Endpoints, HTTP: &http.Client{Transport: tr},
			Username: c.EtcdUsername, Password: c.EtcdPassword, Group: c.Group}
		return v2, tr.CloseIdleConnections, nil
	}
	cli, err := dialEtcd(c)
	if err != nil {
		return nil, nil, err
	}
	v3 := &etcdlock.Client{KV: cli, Watch: cli, Group: c.Group, HolderTTL: c.HolderTTL, Now: now}
	return v3, func() { _ = cli.Close() }, nil
}

// machineID is this machine's lock holder id: flag, else /etc/machine-id.
func machineID(flagValue, file string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("rebootmgr: machine id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", fmt.Errorf("rebootmgr: machine id: %s is empty", file)
	}
	return id, nil
}

// MachineIDFile holds this machine's id, the default lock holder.
var MachineIDFile = "/etc/machine-id"

func mainLock(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	s := newSettings("lock", stderr)
	c, code := parseLock(s, args, stdout, stderr)
	if c == nil {
		return code
	}
	if c.verb == "send-need-reboot" {
		return sendNeedReboot(c.bus, stderr)
	}
	cfg, err := s.config(stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return c.run(ctx, cfg)
}

// lockCmd is one parsed `lock` command.
type lockCmd struct {
	verb           string // status, lock, unlock, reboot, send-need-reboot, set-max
	id             string // the holder for lock, unlock and reboot
	max            int    // for set-max
	bus            string
	staleAfter     time.Duration
	stdout, stderr io.Writer
}

// parseLock reads the flags and operands of `lock`; a nil command means
// exit with the code returned.
func parseLock(s *settings, args []string, stdout, stderr io.Writer) (*lockCmd, int) {
	c := &lockCmd{stdout: stdout, stderr: stderr}
	s.fs.StringVar(&c.bus, "bus", "", "D-Bus address for reboot and send-need-reboot (default: the system bus)")
	idFlag := s.fs.String("machine-id", "", "this machine's id (default: contents of /etc/machine-id)")
	s.fs.DurationVar(&c.staleAfter, "stale-after", DefaultStaleAfter, "status: call a slot held longer than this stale")
	if err := s.fs.Parse(args); err != nil {
		return nil, helpOr2(err)
	}
	rest := s.fs.Args()
	if wantsHelp(rest) {
		fmt.Fprint(stdout, usage)
		return nil, 0
	}
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return nil, 2
	}
	var operands []string
	c.verb, operands = rest[0], rest[1:]
	maxOperands := map[string]int{"status": 0, "lock": 1, "unlock": 1, "reboot": 0, "send-need-reboot": 0, "set-max": 1}
	n, known := maxOperands[c.verb]
	if !known || len(operands) > n || c.verb == "set-max" && len(operands) != 1 {
		fmt.Fprintf(stderr, "bad lock command %q\n%s", strings.Join(rest, " "), usage)
		return nil, 2
	}
	if c.verb == "send-need-reboot" {
		return c, 0
	}
	if c.verb == "reboot" && os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "Must be root to initiate reboot.")
		return nil, 1
	}
	if code := c.holder(operands, *idFlag); code != 0 {
		return nil, code
	}
	if c.verb == "set-max" {
		var err error
		if c.max, err = strconv.Atoi(operands[0]); err != nil || c.max < 0 {
			fmt.Fprintf(stderr, "Invalid maximum value: %s\n", operands[0])
			return nil, 2
		}
	}
	return c, 0
}

// holder sets the id lock, unlock and reboot act for: the operand, else
// this machine's id. It returns a non-zero exit code on failure.
func (c *lockCmd) holder(operands []string, idFlag string) int {
	switch {
	case (c.verb == "lock" || c.verb == "unlock") && len(operands) == 1:
		c.id = operands[0]
	case c.verb == "lock" || c.verb == "unlock" || c.verb == "reboot":
		var err error
		if c.id, err = machineID(idFlag, MachineIDFile); err != nil {
			fmt.Fprintln(c.stderr, err)
			return 1
		}
	}
	return 0
}

// run opens the semaphore and does the command within
// lockCommandTimeout.
func (c *lockCmd) run(parent context.Context, cfg Config) int {
	timeout := lockCommandTimeout
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	// An etcd that refuses the connection (or our TLS) is said at once:
	// the v3 client itself would keep retrying until the timeout.
	probe := etcdProbe(cfg)
	if err := probe(ctx); err != nil {
		fmt.Fprintf(c.stderr, "rebootmgr: etcd %v (%s API) unreachable: %v\n", cfg.Endpoints, cfg.EtcdAPI, err)
		return 1
	}
	lc, closeLC, err := openSemaphores(cfg, time.Now)
	if err != nil {
		fmt.Fprintln(c.stderr, err)
		return 1
	}
	defer closeLC()
	if err := c.do(ctx, parent, lc); err != nil {
		var what *lockError
		if errors.As(err, &what) {
			fmt.Fprintf(c.stderr, "%s: %v\n", what.what, etcdTimeout(parent, ctx, timeout, what.err, probe))
		} else {
			fmt.Fprintln(c.stderr, err)
		}
		return 1
	}
	return 0
}

// lockError is a failed semaphore call, reported as locksmithctl does
// ("Error locking: …").
type lockError struct {
	what string
	err  error
}

func (e *lockError) Error() string { return e.what + ": " + e.err.Error() }

func failed(what string, err error) error {
	if err == nil {
		return nil
	}
	return &lockError{what: what, err: err}
}

// do runs the verb on lc. parent (without the command's timeout) bounds
// the reboot call.
func (c *lockCmd) do(ctx, parent context.Context, lc etcdlock.Semaphores) error {
	switch c.verb {
	case "status":
		return failed("Error getting value", lockStatus(ctx, lc, c.stdout, time.Now(), c.staleAfter))
	case "lock":
		return failed("Error locking", lc.Lock(ctx, c.id))
	case "unlock":
		return failed("Error unlocking", lc.Unlock(ctx, c.id))
	case "set-max":
		old, _, err := lc.Get(ctx)
		if err != nil {
			return failed("Error getting value", err)
		}
		sem, err := lc.SetMax(ctx, c.max)
		if err != nil {
			return failed("Error setting value", err)
		}
		fmt.Fprintf(c.stdout, "Old-Max: %d\nMax: %d\n", old.Max, sem.Max)
	case "reboot":
		if err := lc.Lock(ctx, c.id); err != nil {
			return failed("Error locking", err)
		}
		return c.reboot(parent)
	}
	return nil
}

// reboot asks logind to reboot. As locksmithctl: the lock stays held; the
// manager (or the operator) releases it after the reboot.
func (c *lockCmd) reboot(ctx context.Context) error {
	conn, err := Connect(c.bus)
	if err != nil {
		return err
	}
	defer conn.Close()
	l := &Logind{Conn: conn, Clock: clock.Real{}, Logf: func(f string, a ...any) { fmt.Fprintf(c.stderr, f+"\n", a...) }}
	return l.Reboot(ctx)
}

// DefaultStaleAfter is when `lock status` calls a held slot stale: far
// longer than a reboot takes.
const DefaultStaleAfter = time.Hour

// lockStatus prints the semaphore exactly as locksmithctl status does,
// then a table of each holder: how long it has held its slot (v3: the time recorded when
// it took it; unknown for holders written by locksmithd or through v2)
// and "stale" when that is more than staleAfter: a machine that went
// down with the slot and did not come back, for an operator to release
// with `lock unlock <id>`.
func lockStatus(ctx context.Context, lc etcdlock.Semaphores, w io.Writer, now time.Time, staleAfter time.Duration) error {
	var (
		sem     etcdlock.Semaphore
		holders []etcdlock.Holder
		err     error
	)
	if v3, ok := lc.(*etcdlock.Client); ok {
		sem, holders, err = v3.Holders(ctx)
	} else {
		sem, _, err = lc.Get(ctx)
		for _, id := range sem.Holders {
			holders = append(holders, etcdlock.Holder{ID: id})
		}
	}
	if err != nil {
		return err
	}
	// locksmithctl's lines, byte for byte, for scripts that read them;
	// then, after a blank line, what it does not say.
	fmt.Fprintf(w, "Available: %d\nMax: %d\n", sem.Semaphore, sem.Max)
	if len(holders) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nMACHINE ID\n")
	for _, h := range holders {
		fmt.Fprintln(w, h.ID)
	}
	fmt.Fprintf(w, "\n%-34s %-12s %-21s %s\n", "HOLDER", "HELD FOR", "SINCE", "STATE")
	for _, h := range holders {
		held, since, state := "unknown", "unknown", "unknown (no record)"
		if !h.Since.IsZero() {
			d := max(now.Sub(h.Since), 0).Round(time.Second)
			held, since, state = d.String(), h.Since.UTC().Format(time.RFC3339), "ok"
			if d > staleAfter {
				state = fmt.Sprintf("stale (held over %v)", staleAfter)
			}
		}
		fmt.Fprintf(w, "%-34s %-12s %-21s %s\n", h.ID, held, since, state)
	}
	return nil
}

// sendNeedReboot emits update_engine's StatusUpdate signal with
// UPDATE_STATUS_UPDATED_NEED_REBOOT from /com/coreos/update1, as
// locksmithctl send-need-reboot does, so that a reboot manager can be
// tried without an update.
func sendNeedReboot(bus string, stderr io.Writer) int {
	conn, err := Connect(bus)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer conn.Close()
	if err := conn.Emit(dbus.ObjectPath(update1.Path), update1.Interface+"."+update1.SignalStatusUpdate,
		int64(0), float64(0), update1.StatusUpdatedNeedReboot, "", int64(0)); err != nil {
		fmt.Fprintln(stderr, "error emitting signal:", err)
		return 1
	}
	return 0
}

func mainRun(ctx context.Context, args []string, stderr io.Writer, o Options) int {
	s := newSettings("run", stderr)
	rf, code := parseRun(s, args, stderr)
	if rf == nil {
		return code
	}
	logf := lockedLogf(stderr)
	cfg, err := s.config(stderr)
	if err != nil {
		logf("%v", err)
		return 1
	}
	coord, err := OpenCoordinator(rf.coordFile, "update_engine_reboot_manager", cfg.Strategy.String())
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer coord.Close()
	m := rf.manager(cfg, coord, logf)
	if cfg.Strategy == StrategyOff {
		return exitCode(m.Run(ctx), logf)
	}
	closeLock, err := attachLock(m, cfg, rf.machineID, logf)
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer closeLock()
	conn, err := Connect(rf.bus)
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer conn.Close()
	ue := update1.NewClient(conn)
	ue.Logf = logf
	m.Status = ue
	m.Rebooter = &Logind{Conn: conn, Clock: m.Clock, Retry: rf.inhibitRetry, Logf: logf}
	logf("update_engine_reboot_manager: strategy %v, window %v", cfg.Strategy, windowString(cfg.Window))
	return exitCode(rf.metrics.run(ctx, m, o, logf), logf)
}

// runFlags are the flags of `run` that are not update.conf keys.
type runFlags struct {
	bus, stateFile, coordFile, machineID, utmp  string
	warnDelay, inhibitRetry, retryMin, retryMax time.Duration
	metrics                                     metricsFlags
}

// parseRun reads the flags of `run`; a nil result means exit with the
// code returned.
func parseRun(s *settings, args []string, stderr io.Writer) (*runFlags, int) {
	fs, rf := s.fs, &runFlags{}
	fs.StringVar(&s.strategy, "strategy", "", "reboot strategy: reboot, etcd-lock, fleetlock, off (update.conf REBOOT_STRATEGY)")
	fs.StringVar(&s.windowStart, "window-start", "", "reboot window start, `HH:MM` or `Day HH:MM` (LOCKSMITHD_REBOOT_WINDOW_START)")
	fs.StringVar(&s.length, "window-length", "", "reboot window length, a Go duration (LOCKSMITHD_REBOOT_WINDOW_LENGTH)")
	fs.StringVar(&s.fleetLockURL, "fleetlock-url", "", "FleetLock server base URL (FLEETLOCK_URL)")
	fs.DurationVar(&s.lockTTL, "lock-ttl", 0, "evict etcd holders that keep a slot longer than this; 0 = only `lock unlock` (REBOOT_LOCK_TTL)")
	fs.StringVar(&rf.bus, "bus", "", "D-Bus address (default: the system bus)")
	fs.StringVar(&rf.stateFile, "state-file", DefaultStateFile, "reboot intent file")
	fs.StringVar(&rf.coordFile, "coordinator-file", DefaultCoordinatorConf, "coordinator status file")
	fs.StringVar(&rf.machineID, "machine-id", "", "lock holder id (default: contents of /etc/machine-id)")
	fs.DurationVar(&rf.warnDelay, "warn-delay", 5*time.Minute, "wait after warning logged-in users before rebooting")
	fs.StringVar(&rf.utmp, "utmp", DefaultUtmp, "utmp file listing logged-in users")
	fs.DurationVar(&rf.inhibitRetry, "inhibitor-retry", time.Minute, "wait between checks while a shutdown inhibitor blocks the reboot")
	fs.DurationVar(&rf.retryMin, "retry-min", 5*time.Second, "first lock retry delay (doubles, jittered)")
	fs.DurationVar(&rf.retryMax, "retry-max", 5*time.Minute, "longest lock retry delay")
	rf.metrics = addMetricsFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, helpOr2(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "run: unexpected arguments %v\n", fs.Args())
		return nil, 2
	}
	return rf, 0
}

// lockedLogf logs a line to w at a time: the manager and the status
// watcher log from their own goroutines.
func lockedLogf(w io.Writer) func(format string, a ...any) {
	var mu sync.Mutex
	return func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, format+"\n", a...)
	}
}

// manager is the Manager the flags and cfg describe, without its lock,
// status source and rebooter.
func (rf *runFlags) manager(cfg Config, coord *Coordinator, logf func(string, ...any)) *Manager {
	return &Manager{
		Strategy: cfg.Strategy, Window: cfg.Window, Clock: clock.Real{},
		Backoff:     clock.Backoff{Min: rf.retryMin, Max: rf.retryMax, Rand: clock.Jitter},
		Warner:      Wall{Utmp: rf.utmp},
		WarnDelay:   rf.warnDelay,
		StateFile:   rf.stateFile,
		Coordinator: coord,
		Logf:        logf,
	}
}

// attachLock gives m the lock its strategy needs, held as idFlag (or
// this machine's id), and returns what closes it.
func attachLock(m *Manager, cfg Config, idFlag string, logf func(string, ...any)) (func(), error) {
	id := idFlag
	if cfg.Strategy.NeedsLock() {
		var err error
		if id, err = machineID(idFlag, MachineIDFile); err != nil {
			return nil, err
		}
	}
	switch cfg.Strategy {
	case StrategyEtcdLock:
		lc, closeLC, err := openSemaphores(cfg, m.Clock.Now)
		if err != nil {
			return nil, err
		}
		m.Lock = EtcdLocker{ID: id, Client: lc, Probe: etcdProbe(cfg), Logf: logf}
		return closeLC, nil
	case StrategyFleetLock:
		if cfg.FleetLockURL == "" {
			return nil, fmt.Errorf("%w: strategy fleetlock needs FLEETLOCK_URL or -fleetlock-url", ErrBadConfig)
		}
		m.Lock = &fleetlock.Client{BaseURL: cfg.FleetLockURL, ID: id, Group: cfg.Group,
			HTTP: &http.Client{Timeout: 30 * time.Second}}
	}
	return func() {}, nil
}

func windowString(w *Window) string {
	if w == nil {
		return "any time"
	}
	return w.String()
}

func exitCode(err error, logf func(string, ...any)) int {
	if err != nil && !errors.Is(err, context.Canceled) {
		logf("%v", err)
		return 1
	}
	return 0
}
