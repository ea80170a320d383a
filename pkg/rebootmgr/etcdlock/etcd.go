package etcdlock

import (
	"context"
	"errors"
	"fmt"
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

// Client changes one group's semaphore by compare-and-swap.
type Client struct {
	KV    KV
	Group string // "" = default group
	// HolderTTL > 0 records a deadline for each new holder and lets Lock
	// evict holders past their deadline; 0 = only the operator unlocks.
	HolderTTL time.Duration
	// Now is the clock for HolderTTL deadlines.
	Now func() time.Time
}

// Dial connects to etcd endpoints (v3 API) with a short dial timeout.
func Dial(endpoints []string) (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcdlock: dial %v: %w", endpoints, err)
	}
	return c, nil
}

func (c *Client) key() string { return Key(c.Group) }

func (c *Client) expiryPrefix() string { return c.key() + "-expiry/" }

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
					ops = append(ops, clientv3.OpDelete(c.expiryPrefix()+h))
					evicted = true
				}
			}
		}
		changed, err := s.Lock(id)
		if err != nil {
			return false, nil, err
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
		return true, []clientv3.Op{clientv3.OpDelete(c.expiryPrefix() + id)}, nil
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
