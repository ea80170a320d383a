package rebootmgr

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/abupdate/update_engine/pkg/rebootmgr/etcdlock"
	"github.com/abupdate/update_engine/pkg/rebootmgr/fleetlock"
)

// Locker is a fleet-wide reboot slot for this host.
type Locker interface {
	// Lock takes the slot; holding it already is success. An error means
	// "not now" and the manager retries with backoff.
	Lock(ctx context.Context) error
	// Unlock releases the slot if held; not holding it is success.
	Unlock(ctx context.Context) error
}

// DefaultEtcdTimeout bounds one EtcdLocker Lock or Unlock attempt.
const DefaultEtcdTimeout = 30 * time.Second

// EtcdLocker is a Locker on locksmith's etcd semaphore.
type EtcdLocker struct {
	Client etcdlock.Semaphores // *etcdlock.Client (v3) or *etcdlock.V2Client
	ID     string              // machine id
	// Timeout bounds each Lock and Unlock call (0 = DefaultEtcdTimeout).
	// The etcd client waits for a usable connection as long as its context
	// allows, so without a bound an etcd that is down, or that refuses our
	// TLS settings, would stall the manager without a word.
	Timeout time.Duration
	// Probe, if set, runs when Timeout ends a call, to find out why etcd
	// did not answer (see etcdProbe); its reason goes into the error.
	Probe func(context.Context) error
	// Logf, if set, says when Lock starts waiting for a slot.
	Logf func(format string, args ...any)
}

// Lock takes a slot for ID. While the semaphore is full it waits for a
// change that frees a slot with one watch (etcdlock.Waiter, v3) and tries
// again, so a waiting host sends etcd a few requests per freed slot that
// it tries for, and none while nothing changes, rather than polling; each
// try is bounded by Timeout, the wait only by ctx. Without a watch (v2)
// ErrFull is returned and the manager backs off.
func (l EtcdLocker) Lock(ctx context.Context) error {
	for logged := false; ; logged = true {
		err := l.bounded(ctx, func(ctx context.Context) error { return l.Client.Lock(ctx, l.ID) })
		var full *etcdlock.FullError
		w, ok := l.Client.(etcdlock.Waiter)
		if !ok || !errors.As(err, &full) {
			return err
		}
		if l.Logf != nil && !logged {
			l.Logf("take reboot lock: %v; watching for a free slot", err)
		}
		if werr := w.WaitFree(ctx, l.ID, full.Rev); werr != nil {
			if errors.Is(werr, etcdlock.ErrNoWatch) {
				return err
			}
			return werr
		}
	}
}

// Unlock releases ID's slot; ErrNotHeld is success.
func (l EtcdLocker) Unlock(ctx context.Context) error {
	return l.bounded(ctx, func(ctx context.Context) error {
		if err := l.Client.Unlock(ctx, l.ID); err != nil && !errors.Is(err, etcdlock.ErrNotHeld) {
			return err
		}
		return nil
	})
}

// bounded runs f under l's timeout and says so when that timeout, rather
// than ctx, ended it.
func (l EtcdLocker) bounded(ctx context.Context, f func(context.Context) error) error {
	d := l.Timeout
	if d <= 0 {
		d = DefaultEtcdTimeout
	}
	fctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return etcdTimeout(ctx, fctx, d, f(fctx), l.Probe)
}

// etcdTimeout explains err when the bound d that made ctx from parent,
// not parent itself, ended an etcd call: the etcd client then reports only
// "context deadline exceeded", whatever kept it from connecting. probe,
// if set, finds the reason.
func etcdTimeout(parent, ctx context.Context, d time.Duration, err error, probe func(context.Context) error) error {
	if err == nil || parent.Err() != nil || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return err
	}
	why := "down, unreachable, or refusing the LOCKSMITHD_ETCD_CAFILE/_CERTFILE/_KEYFILE TLS settings"
	if probe != nil {
		if perr := probe(parent); perr != nil {
			why = perr.Error()
		}
	}
	return fmt.Errorf("rebootmgr: etcd gave no answer within %v (%s): %w", d, why, err)
}

// FleetLocker adapts a FleetLock client (already a Locker; named for
// symmetry and docs).
type FleetLocker = *fleetlock.Client

var (
	_ Locker = EtcdLocker{}
	_ Locker = FleetLocker(nil)
)
