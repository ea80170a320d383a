package rebootmgr

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/abupdate/update_engine/pkg/clock"
	"github.com/abupdate/update_engine/pkg/update1"
)

// stepClock is a manual clock: After advances it by d and fires at once,
// so a backoff takes no wall time and its length is exact.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.t = c.t.Add(d)
	t := c.t
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- t
	return ch
}

// recObserver records what an Observer hears, as strings.
type recObserver struct {
	mu     sync.Mutex
	events []string
}

func (r *recObserver) add(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
}
func (r *recObserver) SetStrategy(s string)            { r.add("strategy " + s) }
func (r *recObserver) SetLockHeld(h bool)              { r.add(fmt.Sprint("held ", h)) }
func (r *recObserver) ObserveLockWait(d time.Duration) { r.add("wait " + d.String()) }
func (r *recObserver) RebootRequested()                { r.add("reboot") }

func (r *recObserver) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// failingLocker refuses the first fails Lock calls.
type failingLocker struct {
	mu    sync.Mutex
	fails int
}

func (l *failingLocker) Lock(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fails > 0 {
		l.fails--
		return errors.New("slot taken")
	}
	return nil
}
func (l *failingLocker) Unlock(context.Context) error { return nil }

// TestObserve: a real Manager, observed, releases the slot at start (not
// held), waits 5 s + 10 s of backoff for it on the clock (two refusals),
// holds it, and asks logind to reboot, in that order.
func TestObserve(t *testing.T) {
	clk := &stepClock{t: time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)}
	obs := &recObserver{}
	rebooted := make(chan struct{}, 1)
	src := newMemSource(update1.StatusUpdatedNeedReboot)
	m := &Manager{
		Strategy: StrategyEtcdLock, Clock: clk, Status: src,
		Backoff: clock.Backoff{Min: 5 * time.Second, Max: time.Minute},
		Lock:    &failingLocker{fails: 2},
		Rebooter: funcRebooter(func(context.Context) error {
			rebooted <- struct{}{}
			return nil
		}),
	}
	Observe(m, obs)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case <-rebooted:
	case err := <-done:
		t.Fatalf("Run returned %v before rebooting", err)
	}
	cancel()
	<-done
	want := []string{"strategy etcd-lock", "held false", "wait 15s", "held true", "reboot"}
	got := obs.get()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("observed %q, want %q", got, want)
	}
}

// TestHelpExitsZero: -h and --help of every command and lock verb exit 0
// and never act (lock unlock --help must not unlock a machine "--help").
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"run", "--help"}, {"run", "-h"}, {"lock", "--help"},
		{"lock", "status", "--help"}, {"lock", "lock", "--help"}, {"lock", "unlock", "-h"}, {"lock", "reboot", "--help"},
		{"lock", "send-need-reboot", "--help"}, {"lock", "set-max", "--help"}} {
		var out, errb syncBuffer
		if code := Main(t.Context(), args, &out, &errb); code != 0 {
			t.Errorf("%v: exit %d\n%s", args, code, errb.String())
		}
		if out.String()+errb.String() == "" {
			t.Errorf("%v: no help printed", args)
		}
	}
}
