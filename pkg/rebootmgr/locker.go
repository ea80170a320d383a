package rebootmgr

import (
	"context"
	"errors"

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

// EtcdLocker is a Locker on locksmith's etcd semaphore.
type EtcdLocker struct {
	Client *etcdlock.Client
	ID     string // machine id
}

// Lock takes a slot for ID.
func (l EtcdLocker) Lock(ctx context.Context) error { return l.Client.Lock(ctx, l.ID) }

// Unlock releases ID's slot; ErrNotHeld is success.
func (l EtcdLocker) Unlock(ctx context.Context) error {
	if err := l.Client.Unlock(ctx, l.ID); err != nil && !errors.Is(err, etcdlock.ErrNotHeld) {
		return err
	}
	return nil
}

// FleetLocker adapts a FleetLock client (already a Locker; named for
// symmetry and docs).
type FleetLocker = *fleetlock.Client

var (
	_ Locker = EtcdLocker{}
	_ Locker = FleetLocker(nil)
)
