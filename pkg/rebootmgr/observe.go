package rebootmgr

import (
	"context"
	"errors"
	"flag"
	"sync"
	"time"

	"github.com/abupdate/update_engine/pkg/clock"
)

// Observer hears what the reboot manager does, for metrics (as Zincati
// exports its own). pkg/ has no Prometheus: the command
// (cmd/update_engine_reboot_manager) passes internal/metrics's
// implementation in Options. Calls come from the manager's goroutine.
type Observer interface {
	// SetStrategy is called once, at start, with the strategy's name.
	SetStrategy(strategy string)
	// SetLockHeld says whether this host holds its reboot slot, after
	// each Lock or Unlock that succeeded.
	SetLockHeld(held bool)
	// ObserveLockWait is the time from the first attempt to take the
	// slot to the one that succeeded (retries and backoff included).
	ObserveLockWait(d time.Duration)
	// RebootRequested counts one reboot asked of logind.
	RebootRequested()
}

// Metrics is an Observer that can also serve what it observed.
type Metrics interface {
	Observer
	// ServeUnix serves the metrics (Prometheus text format, GET
	// /metrics) on a Unix socket at path until ctx is done.
	ServeUnix(ctx context.Context, path string) error
}

// Options are what only the command can give Main.
type Options struct {
	// Metrics, if set, observes the run command's manager; with
	// --metrics-socket it is served there.
	Metrics Metrics
}

// metricsFlags are the run command's metrics flags.
type metricsFlags struct{ socket *string }

func addMetricsFlags(fs *flag.FlagSet) metricsFlags {
	return metricsFlags{socket: fs.String("metrics-socket", "",
		"serve Prometheus metrics on this Unix socket, e.g. /run/update_engine_reboot_manager/metrics.promsock (default off)")}
}

// run runs m, observed by o.Metrics and served on the socket if asked;
// the server stops when m does.
func (f metricsFlags) run(ctx context.Context, m *Manager, o Options, logf func(string, ...any)) error {
	if o.Metrics == nil {
		if *f.socket != "" {
			logf("--metrics-socket: this build has no metrics; ignored")
		}
		return m.Run(ctx)
	}
	Observe(m, o.Metrics)
	if *f.socket == "" {
		return m.Run(ctx)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := o.Metrics.ServeUnix(mctx, *f.socket); err != nil {
			logf("metrics: %v", err)
		}
	}()
	logf("metrics on unix socket %s", *f.socket)
	err := m.Run(ctx)
	stop()
	<-done
	return err
}

// Observe makes obs hear m: the strategy now, and, by wrapping m.Lock and
// m.Rebooter, lock state, lock waits and reboot requests. Call it once
// m's fields are set, before Run.
func Observe(m *Manager, obs Observer) {
	obs.SetStrategy(m.Strategy.String())
	obs.SetLockHeld(false)
	if m.Lock != nil {
		m.Lock = &observedLocker{Locker: m.Lock, obs: obs, clock: m.Clock}
	}
	if m.Rebooter != nil {
		m.Rebooter = observedRebooter{Rebooter: m.Rebooter, obs: obs}
	}
}

type observedLocker struct {
	Locker
	obs   Observer
	clock clock.Clock

	mu    sync.Mutex
	since time.Time // first attempt of the current wait; zero = not waiting
}

func (l *observedLocker) Lock(ctx context.Context) error {
	l.mu.Lock()
	if l.since.IsZero() {
		l.since = l.clock.Now()
	}
	l.mu.Unlock()
	err := l.Locker.Lock(ctx)
	if err != nil {
		return err
	}
	l.mu.Lock()
	wait := l.clock.Now().Sub(l.since)
	l.since = time.Time{}
	l.mu.Unlock()
	l.obs.ObserveLockWait(wait)
	l.obs.SetLockHeld(true)
	return nil
}

func (l *observedLocker) Unlock(ctx context.Context) error {
	err := l.Locker.Unlock(ctx)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.since = time.Time{}
	l.mu.Unlock()
	l.obs.SetLockHeld(false)
	return nil
}

type observedRebooter struct {
	Rebooter
	obs Observer
}

func (r observedRebooter) Reboot(ctx context.Context) error {
	r.obs.RebootRequested()
	return r.Rebooter.Reboot(ctx)
}

// helpOr2 is the exit code of a flag parse error: 0 for -h/--help (the
// flag package printed the flags), 2 otherwise.
func helpOr2(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// wantsHelp reports whether operands (after the flags) ask for help, as in
// "lock unlock --help": never a machine id.
func wantsHelp(operands []string) bool {
	for _, a := range operands {
		if a == "-h" || a == "-help" || a == "--help" {
			return true
		}
	}
	return false
}
