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
	"time"

	"github.com/abupdate/update_engine/pkg/rebootmgr/etcdlock"
	"github.com/abupdate/update_engine/pkg/rebootmgr/fleetlock"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

const usage = `usage: update_engine_reboot_manager <command> [flags]

commands:
  run                     manage reboots after updates (the daemon)
  lock status             show the etcd reboot lock: available slots, max, holders
  lock unlock <id>        release the slot held by machine <id> (a host that never came back)
  lock set-max <n>        set the number of hosts that may reboot at once

Settings come from update.conf (/etc/flatcar/update.conf, /etc/coreos/update.conf,
/usr/share/flatcar/update.conf, /usr/share/coreos/update.conf; first file holding a
key wins); flags override them. Lock commands also read LOCKSMITHCTL_ENDPOINT,
LOCKSMITHD_ENDPOINT and LOCKSMITHD_GROUP from the environment.
Run "update_engine_reboot_manager <command> -h" for its flags.
`

// Main is the update_engine_reboot_manager command line. It returns the
// process exit code: 0 ok, 1 failure, 2 usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return mainRun(ctx, args[1:], stderr)
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
	configFiles         string
	strategy            string
	windowStart, length string
	endpoint, group     string
	fleetLockURL        string
	lockTTL             time.Duration
}

func newSettings(name string, stderr io.Writer) *settings {
	s := &settings{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	s.fs.SetOutput(stderr)
	s.fs.StringVar(&s.configFiles, "config", strings.Join(ConfigFiles, ","), "update.conf files, in search order (comma list)")
	s.fs.StringVar(&s.endpoint, "endpoint", "", "etcd endpoints, comma list (update.conf LOCKSMITHD_ENDPOINT)")
	s.fs.StringVar(&s.group, "group", "", "reboot lock group (update.conf LOCKSMITHD_GROUP)")
	return s
}

// config loads update.conf and applies the flags that were set. Lines of
// update.conf that do not parse, and unknown keys, are logged to warn and
// skipped.
func (s *settings) config(warn io.Writer) (Config, error) {
	env, warns, err := LoadEnv(SplitEndpoints(s.configFiles))
	if err != nil {
		return Config{}, err
	}
	for _, w := range warns {
		fmt.Fprintf(warn, "warning: %v\n", w)
	}
	set := map[string]bool{}
	s.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	override := func(flagName, key, v string) {
		if set[flagName] {
			env[key] = v
		}
	}
	override("strategy", "REBOOT_STRATEGY", s.strategy)
	if set["window-start"] || set["window-length"] {
		// A flag-given window replaces update.conf's, legacy keys too.
		for _, k := range []string{"LOCKSMITHD_REBOOT_WINDOW_START", "LOCKSMITHD_REBOOT_WINDOW_LENGTH", "REBOOT_WINDOW_START", "REBOOT_WINDOW_LENGTH"} {
			delete(env, k)
		}
		env["LOCKSMITHD_REBOOT_WINDOW_START"] = s.windowStart
		env["LOCKSMITHD_REBOOT_WINDOW_LENGTH"] = s.length
	}
	override("endpoint", "LOCKSMITHD_ENDPOINT", s.endpoint)
	override("group", "LOCKSMITHD_GROUP", s.group)
	override("fleetlock-url", "FLEETLOCK_URL", s.fleetLockURL)
	if set["lock-ttl"] {
		env["REBOOT_LOCK_TTL"] = s.lockTTL.String()
	}
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
		Username:    c.EtcdUsername,
		Password:    c.EtcdPassword,
		Logger:      zap.NewNop(), // errors reach us as return values
	})
	if err != nil {
		return nil, fmt.Errorf("rebootmgr: etcd %v: %w", c.Endpoints, err)
	}
	return cli, nil
}

func mainLock(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	s := newSettings("lock", stderr)
	if err := s.fs.Parse(args); err != nil {
		return 2
	}
	rest := s.fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	// The environment sits between update.conf and the flags.
	for _, k := range []string{"LOCKSMITHCTL_ENDPOINT", "LOCKSMITHD_ENDPOINT"} {
		if v := os.Getenv(k); v != "" && s.endpoint == "" {
			s.endpoint = v
			_ = s.fs.Set("endpoint", v)
		}
	}
	if v := os.Getenv("LOCKSMITHD_GROUP"); v != "" && s.group == "" {
		_ = s.fs.Set("group", v)
	}
	cfg, err := s.config(stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	cli, err := dialEtcd(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer cli.Close()
	parent, timeout := ctx, lockCommandTimeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lc := &etcdlock.Client{KV: cli, Group: cfg.Group}
	fail := func(err error) int {
		fmt.Fprintln(stderr, etcdTimeout(parent, ctx, timeout, err, etcdProbe(cfg)))
		return 1
	}

	switch {
	case rest[0] == "status" && len(rest) == 1:
		sem, _, err := lc.Get(ctx)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "Available: %d\nMax: %d\n", sem.Semaphore, sem.Max)
		if len(sem.Holders) > 0 {
			fmt.Fprintf(stdout, "\nMACHINE ID\n")
			for _, h := range sem.Holders {
				fmt.Fprintln(stdout, h)
			}
		}
		return 0
	case rest[0] == "unlock" && len(rest) == 2:
		if err := lc.Unlock(ctx, rest[1]); err != nil {
			return fail(err)
		}
		return 0
	case rest[0] == "set-max" && len(rest) == 2:
		n, err := strconv.Atoi(rest[1])
		if err != nil || n < 0 {
			fmt.Fprintf(stderr, "set-max: %q is not a count\n", rest[1])
			return 2
		}
		old, _, err := lc.Get(ctx)
		if err != nil {
			return fail(err)
		}
		sem, err := lc.SetMax(ctx, n)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "Old: %d\nNew: %d\n", old.Max, sem.Max)
		return 0
	}
	fmt.Fprintf(stderr, "bad lock command %q\n%s", strings.Join(rest, " "), usage)
	return 2
}

func mainRun(ctx context.Context, args []string, stderr io.Writer) int {
	s := newSettings("run", stderr)
	fs := s.fs
	fs.StringVar(&s.strategy, "strategy", "", "reboot strategy: reboot, etcd-lock, fleetlock, off (update.conf REBOOT_STRATEGY)")
	fs.StringVar(&s.windowStart, "window-start", "", "reboot window start, `HH:MM` or `Day HH:MM` (LOCKSMITHD_REBOOT_WINDOW_START)")
	fs.StringVar(&s.length, "window-length", "", "reboot window length, a Go duration (LOCKSMITHD_REBOOT_WINDOW_LENGTH)")
	fs.StringVar(&s.fleetLockURL, "fleetlock-url", "", "FleetLock server base URL (FLEETLOCK_URL)")
	fs.DurationVar(&s.lockTTL, "lock-ttl", 0, "evict etcd holders that keep a slot longer than this; 0 = only `lock unlock` (REBOOT_LOCK_TTL)")
	bus := fs.String("bus", "", "D-Bus address (default: the system bus)")
	stateFile := fs.String("state-file", DefaultStateFile, "reboot intent file")
	coordFile := fs.String("coordinator-file", DefaultCoordinatorConf, "coordinator status file")
	machineID := fs.String("machine-id", "", "lock holder id (default: contents of /etc/machine-id)")
	warnDelay := fs.Duration("warn-delay", 5*time.Minute, "wait after warning logged-in users before rebooting")
	utmp := fs.String("utmp", DefaultUtmp, "utmp file listing logged-in users")
	inhibitRetry := fs.Duration("inhibitor-retry", time.Minute, "wait between checks while a shutdown inhibitor blocks the reboot")
	retryMin := fs.Duration("retry-min", 5*time.Second, "first lock retry delay (doubles, jittered)")
	retryMax := fs.Duration("retry-max", 5*time.Minute, "longest lock retry delay")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "run: unexpected arguments %v\n", fs.Args())
		return 2
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	cfg, err := s.config(stderr)
	if err != nil {
		logf("%v", err)
		return 1
	}
	coord, err := OpenCoordinator(*coordFile, "update_engine_reboot_manager", cfg.Strategy.String())
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer coord.Close()
	clock := SystemClock{}
	m := &Manager{
		Strategy: cfg.Strategy, Window: cfg.Window, Clock: clock,
		Backoff:     Backoff{Min: *retryMin, Max: *retryMax, Rand: jitter},
		Warner:      Wall{Utmp: *utmp},
		WarnDelay:   *warnDelay,
		StateFile:   *stateFile,
		Coordinator: coord,
		Logf:        logf,
	}
	if cfg.Strategy == StrategyOff {
		return exitCode(m.Run(ctx), logf)
	}
	id := *machineID
	if cfg.Strategy.NeedsLock() && id == "" {
		b, err := os.ReadFile("/etc/machine-id")
		if err != nil {
			logf("rebootmgr: machine id: %v", err)
			return 1
		}
		id = strings.TrimSpace(string(b))
	}
	switch cfg.Strategy {
	case StrategyEtcdLock:
		cli, err := dialEtcd(cfg)
		if err != nil {
			logf("%v", err)
			return 1
		}
		defer cli.Close()
		m.Lock = EtcdLocker{ID: id, Client: &etcdlock.Client{KV: cli, Group: cfg.Group, HolderTTL: cfg.HolderTTL, Now: clock.Now},
			Probe: etcdProbe(cfg)}
	case StrategyFleetLock:
		if cfg.FleetLockURL == "" {
			logf("%v: strategy fleetlock needs FLEETLOCK_URL or -fleetlock-url", ErrBadConfig)
			return 1
		}
		m.Lock = &fleetlock.Client{BaseURL: cfg.FleetLockURL, ID: id, Group: cfg.Group,
			HTTP: &http.Client{Timeout: 30 * time.Second}}
	}
	conn, err := Connect(*bus)
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer conn.Close()
	m.Status = NewUpdateEngine(conn)
	m.Rebooter = &Logind{Conn: conn, Clock: clock, Retry: *inhibitRetry, Logf: logf}
	logf("update_engine_reboot_manager: strategy %v, window %v", cfg.Strategy, windowString(cfg.Window))
	return exitCode(m.Run(ctx), logf)
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
