package etcdlock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ErrConflict: the key changed between read and write; the caller's
// operation was not applied and may be retried at once.
var ErrConflict = errors.New("etcdlock: concurrent update")

// KV is the part of the etcd v3 client used here (*clientv3.Client
// satisfies it).
type KV interface {
	Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
	Txn(ctx context.Context) clientv3.Txn
}

// Watcher is the watch part of the etcd v3 client (*clientv3.Client
// satisfies it).
type Watcher interface {
	Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan
}

// ErrNoWatch: WaitFree on a Client without a Watcher.
var ErrNoWatch = errors.New("etcdlock: no watcher to wait with")

// FullError is Lock's ErrFull (errors.Is(err, ErrFull) holds) with the
// revision at which the semaphore was read full, from which WaitFree
// watches.
type FullError struct {
	Rev     int64
	Holders []string
}

func (e *FullError) Error() string {
	return fmt.Sprintf("%v (holders %s)", ErrFull, strings.Join(e.Holders, ", "))
}

// Is makes errors.Is(e, ErrFull) true.
func (e *FullError) Is(target error) bool { return target == ErrFull }

// Defaults of Client's waiting.
const (
	// DefaultRecheck: WaitFree returns at least this often, so the caller
	// reads the semaphore again (holder deadlines pass without a change
	// of the key; a watch can be stuck on a hung member).
	DefaultRecheck = time.Minute
	// DefaultSpread: a waiter that sees a slot freed tries to take it
	// after a random delay below this, unless it sees the semaphore full
	// again first; so one free slot draws one or a few attempts, not one
	// per waiter.
	DefaultSpread = time.Second
)

// Client changes one group's semaphore by compare-and-swap.
type Client struct {
	KV    KV
	Group string // "" = default group
	// Watch, if set, lets WaitFree wait for a slot with one watch
	// instead of polling.
	Watch Watcher
	// Recheck and Spread tune WaitFree (0 = DefaultRecheck,
	// DefaultSpread).
	Recheck, Spread time.Duration
	// After is the timer of WaitFree (nil = time.After).
	After func(time.Duration) <-chan time.Time
	// HolderTTL > 0 records a deadline for each new holder and lets Lock
	// evict holders past their deadline; 0 = only the operator unlocks.
	HolderTTL time.Duration
	// Now is the clock for HolderTTL deadlines.
	Now func() time.Time
}

// gRPC keepalive of the clients: a member that hangs (SIGSTOP, a frozen
// host) keeps its TCP connection open; the pings find it out and the
// client moves to another endpoint.
const (
	KeepAliveTime    = 10 * time.Second
	KeepAliveTimeout = 5 * time.Second
)

// Dial connects to etcd endpoints (v3 API) with a short dial timeout.
func Dial(endpoints []string) (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialKeepAliveTime: KeepAliveTime, DialKeepAliveTimeout: KeepAliveTimeout})
	if err != nil {
		return nil, fmt.Errorf("etcdlock: dial %v: %w", endpoints, err)
	}
	return c, nil
}

func (c *Client) key() string { return Key(c.Group) }

func (c *Client) expiryPrefix() string { return c.key() + "-expiry/" }

// sincePrefix holds, per holder, when it took its slot (RFC 3339, UTC),
// for `lock status` to say how long a slot has been held.
func (c *Client) sincePrefix() string { return c.key() + "-since/" }

// Get returns the current value and its ModRevision, creating the key
// (compare CreateRevision == 0) with NewSemaphore when it is missing.
func (c *Client) Get(ctx context.Context) (Semaphore, int64, error) {
	for {
		resp, err := c.KV.Get(ctx, c.key())
		if err != nil {
			return Semaphore{}, 0, fmt.Errorf("etcdlock: get %s: %w", c.key(), err)
		}
		if len(resp.Kvs) > 0 {
			kv := resp.Kvs[0]
			s, err := Parse(kv.Value)
			if err != nil {
				return Semaphore{}, 0, fmt.Errorf("%s: %w", c.key(), err)
			}
			return s, kv.ModRevision, nil
		}
		fresh := NewSemaphore()
		tr, err := c.KV.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(c.key()), "=", 0)).
			Then(clientv3.OpPut(c.key(), string(fresh.Marshal()))).
			Commit()
		if err != nil {
			return Semaphore{}, 0, fmt.Errorf("etcdlock: create %s: %w", c.key(), err)
		}
		if tr.Succeeded {
			return fresh, tr.Header.Revision, nil
		}
		// Someone else created it; read again.
	}
}

// update reads the value, applies f, and writes it back if f changed it,
// comparing ModRevision. extra ops run in the same transaction.
func (c *Client) update(ctx context.Context, f func(*Semaphore) (bool, []clientv3.Op, error)) (Semaphore, error) {
	for {
		s, rev, err := c.Get(ctx)
		if err != nil {
			return s, err
		}
		changed, extra, err := f(&s)
		if errors.Is(err, ErrFull) {
			return s, &FullError{Rev: rev, Holders: slices.Clone(s.Holders)}
		}
		if err != nil || !changed {
			return s, err
		}
		ops := append([]clientv3.Op{clientv3.OpPut(c.key(), string(s.Marshal()))}, extra...)
		tr, err := c.KV.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(c.key()), "=", rev)).
			Then(ops...).
			Commit()
		if err != nil {
			return s, fmt.Errorf("etcdlock: write %s: %w", c.key(), err)
		}
		if tr.Succeeded {
			return s, nil
		}
		if err := ctx.Err(); err != nil {
			return s, err
		}
		// Lost the race: read the new value and try again.
	}
}

// Lock takes a slot for id (success if id already holds one). It returns
// ErrFull when no slot is free; with HolderTTL it first evicts holders past
// their deadline.
func (c *Client) Lock(ctx context.Context, id string) error {
	_, err := c.update(ctx, func(s *Semaphore) (bool, []clientv3.Op, error) {
		var ops []clientv3.Op
		evicted := false
		if s.Semaphore <= 0 && !s.Holds(id) && c.HolderTTL > 0 {
			// Read after the semaphore: a holder's deadline changes only
			// in the same transaction as the semaphore, so the CAS below
			// fails if what we read here is stale.
			expired, err := c.expired(ctx)
			if err != nil {
				return false, nil, err
			}
			for _, h := range append([]string(nil), s.Holders...) {
				if expired[h] {
					_ = s.Unlock(h)
					ops = append(ops, clientv3.OpDelete(c.expiryPrefix()+h), clientv3.OpDelete(c.sincePrefix()+h))
					evicted = true
				}
			}
		}
		changed, err := s.Lock(id)
		if err != nil {
			return false, nil, err
		}
		if changed {
			ops = append(ops, clientv3.OpPut(c.sincePrefix()+id, c.now().UTC().Format(time.RFC3339)))
		}
		if changed && c.HolderTTL > 0 {
			deadline := c.now().Add(c.HolderTTL).UTC().Format(time.RFC3339)
			ops = append(ops, clientv3.OpPut(c.expiryPrefix()+id, deadline))
		}
		return changed || evicted, ops, nil
	})
	return err
}

// Unlock releases id's slot. It returns ErrNotHeld when id holds none.
func (c *Client) Unlock(ctx context.Context, id string) error {
	_, err := c.update(ctx, func(s *Semaphore) (bool, []clientv3.Op, error) {
		if err := s.Unlock(id); err != nil {
			return false, nil, err
		}
		return true, []clientv3.Op{clientv3.OpDelete(c.expiryPrefix() + id), clientv3.OpDelete(c.sincePrefix() + id)}, nil
	})
	return err
}

// SetMax sets the number of slots.
func (c *Client) SetMax(ctx context.Context, max int) (Semaphore, error) {
	return c.update(ctx, func(s *Semaphore) (bool, []clientv3.Op, error) {
		if err := s.SetMax(max); err != nil {
			return false, nil, err
		}
		return true, nil, nil
	})
}

// Holds reports whether id currently holds a slot.
func (c *Client) Holds(ctx context.Context, id string) (bool, error) {
	s, _, err := c.Get(ctx)
	if err != nil {
		return false, err
	}
	return s.Holds(id), nil
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// expired returns the holders whose recorded deadline has passed.
func (c *Client) expired(ctx context.Context) (map[string]bool, error) {
	resp, err := c.KV.Get(ctx, c.expiryPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcdlock: get deadlines: %w", err)
	}
	now := c.now()
	out := map[string]bool{}
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), c.expiryPrefix())
		t, err := time.Parse(time.RFC3339, string(kv.Value))
		if err != nil || now.After(t) {
			out[id] = true
		}
	}
	return out, nil
}

// Holder is one holder of a slot, as `lock status` reports it.
type Holder struct {
	ID string
	// Since is when it took the slot; zero when unrecorded (a holder
	// written by locksmithd, or by a version without the record).
	Since time.Time
}

// Holders returns the semaphore and its holders with the time each took
// its slot, both read at one revision.
func (c *Client) Holders(ctx context.Context) (Semaphore, []Holder, error) {
	resp, err := c.KV.Get(ctx, c.key())
	if err != nil {
		return Semaphore{}, nil, fmt.Errorf("etcdlock: get %s: %w", c.key(), err)
	}
	if len(resp.Kvs) == 0 {
		s, _, err := c.Get(ctx) // creates it
		return s, nil, err
	}
	s, err := Parse(resp.Kvs[0].Value)
	if err != nil {
		return Semaphore{}, nil, fmt.Errorf("%s: %w", c.key(), err)
	}
	since, err := c.KV.Get(ctx, c.sincePrefix(), clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision))
	if err != nil {
		return s, nil, fmt.Errorf("etcdlock: get holder times: %w", err)
	}
	at := map[string]time.Time{}
	for _, kv := range since.Kvs {
		if t, err := time.Parse(time.RFC3339, string(kv.Value)); err == nil {
			at[strings.TrimPrefix(string(kv.Key), c.sincePrefix())] = t
		}
	}
	var hs []Holder
	for _, id := range s.Holders {
		hs = append(hs, Holder{ID: id, Since: at[id]})
	}
	return s, hs, nil
}

// WaitFree waits, with one watch on the semaphore key from revision
// rev+1 (a FullError's Rev), until a change shows a slot free for id,
// then returns nil for the caller to Lock again; it also returns nil
// (read again) when the watch ends (compaction, the member lost its
// leader: the watch requires one) or Recheck passes. It returns ctx's
// error when ctx ends, and ErrNoWatch without a Watcher.
func (c *Client) WaitFree(ctx context.Context, id string, rev int64) error {
	if c.Watch == nil {
		return ErrNoWatch
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	ch := c.Watch.Watch(wctx, c.key(), clientv3.WithRev(rev+1))
	recheck := c.after(orDefault(c.Recheck, DefaultRecheck))
	var try <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-recheck:
			return nil
		case <-try:
			return nil
		case resp, ok := <-ch:
			if !ok || resp.Err() != nil || resp.Canceled {
				return ctx.Err()
			}
			for _, ev := range resp.Events {
				free := true // deleted or unreadable: Lock sorts it out
				if ev.Type == clientv3.EventTypePut {
					if s, err := Parse(ev.Kv.Value); err == nil {
						free = s.Semaphore > 0 || s.Holds(id)
					}
				}
				switch {
				case !free:
					try = nil
				case try == nil:
					spread := orDefault(c.Spread, DefaultSpread)
					try = c.after(time.Duration(rand.Int64N(int64(spread))))
				}
			}
		}
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (c *Client) after(d time.Duration) <-chan time.Time {
	if c.After != nil {
		return c.After(d)
	}
	return time.After(d)
}
