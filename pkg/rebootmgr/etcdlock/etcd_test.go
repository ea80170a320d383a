package etcdlock

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func dial(t *testing.T, e *testenv.Etcd) *clientv3.Client {
	t.Helper()
	c, err := Dial([]string{e.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestEtcdLockFormatAndCAS(t *testing.T) {
	e := testenv.StartEtcd(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := &Client{KV: dial(t, e)}

	s, _, err := c.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(s.Marshal()); got != `{"semaphore":1,"max":1,"holders":null}` {
		t.Fatalf("fresh value %s", got)
	}
	got := e.Etcdctl(t, "get", "--print-value-only", Key(""))
	if strings.TrimSpace(got) != `{"semaphore":1,"max":1,"holders":null}` {
		t.Fatalf("etcdctl get: %q", got)
	}
	if _, err := c.SetMax(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"bbb", "aaa"} {
		if err := c.Lock(ctx, id); err != nil {
			t.Fatalf("lock %s: %v", id, err)
		}
	}
	if err := c.Lock(ctx, "aaa"); err != nil {
		t.Fatalf("recursive lock: %v", err)
	}
	if err := c.Lock(ctx, "ccc"); !errors.Is(err, ErrFull) {
		t.Fatalf("third lock: %v, want ErrFull", err)
	}
	got = e.Etcdctl(t, "get", "--print-value-only", Key(""))
	if strings.TrimSpace(got) != `{"semaphore":0,"max":2,"holders":["aaa","bbb"]}` {
		t.Fatalf("etcdctl get: %q", got)
	}
	if err := c.Unlock(ctx, "ccc"); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("unlock non-holder: %v", err)
	}
	if err := c.Unlock(ctx, "aaa"); err != nil {
		t.Fatal(err)
	}
	g := &Client{KV: c.KV, Group: "web servers"}
	if err := g.Lock(ctx, "aaa"); err != nil {
		t.Fatal(err)
	}
	got = e.Etcdctl(t, "get", "--print-value-only", "coreos.com/updateengine/rebootlock/groups/web+servers/semaphore")
	if strings.TrimSpace(got) != `{"semaphore":0,"max":1,"holders":["aaa"]}` {
		t.Fatalf("group value: %q", got)
	}
}

// startWithClock starts etcd and returns it, a client, a context that
// ends with the test (or after a minute) and a settable clock.
func startWithClock(t *testing.T, now *time.Time) (*testenv.Etcd, *clientv3.Client, context.Context) {
	e := testenv.StartEtcd(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	*now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	return e, dial(t, e), ctx
}

func TestHolderTTLEvictsDeadHolder(t *testing.T) {
	var now time.Time
	e, kv, ctx := startWithClock(t, &now)
	clock := func() time.Time { return now }
	c := &Client{KV: kv, HolderTTL: time.Hour, Now: clock}
	legacy := &Client{KV: kv, Group: "legacy", HolderTTL: time.Hour, Now: clock}

	if err := c.Lock(ctx, "dead"); err != nil {
		t.Fatal(err)
	}
	got := e.Etcdctl(t, "get", "--print-value-only", Key("")+"-expiry/dead")
	if strings.TrimSpace(got) != "2026-11-26T13:00:00Z" {
		t.Fatalf("deadline record %q", got)
	}
	now = now.Add(59 * time.Minute)
	if err := c.Lock(ctx, "alive"); !errors.Is(err, ErrFull) {
		t.Fatalf("before the deadline: %v, want ErrFull", err)
	}
	now = now.Add(2 * time.Minute)
	if err := c.Lock(ctx, "alive"); err != nil {
		t.Fatalf("after the deadline: %v", err)
	}
	s, _, err := c.Get(ctx)
	if err != nil || !slices.Equal(s.Holders, []string{"alive"}) || s.Semaphore != 0 {
		t.Fatalf("after eviction: %+v, %v", s, err)
	}
	if out := e.Etcdctl(t, "get", "--print-value-only", Key("")+"-expiry/dead"); strings.TrimSpace(out) != "" {
		t.Fatalf("evicted holder's deadline left: %q", out)
	}
	if err := c.Unlock(ctx, "alive"); err != nil {
		t.Fatal(err)
	}

	// A holder written by locksmithd (no deadline record) is never evicted.
	if _, err := kv.Put(ctx, Key("legacy"), `{"semaphore":0,"max":1,"holders":["locksmithd-host"]}`); err != nil {
		t.Fatal(err)
	}
	now = now.Add(1000 * time.Hour)
	if err := legacy.Lock(ctx, "alive"); !errors.Is(err, ErrFull) {
		t.Fatalf("legacy holder evicted: %v", err)
	}
}

func TestSemaphoreValue(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		op      func(*Semaphore) error
		want    string
		wantErr error
	}{
		{name: "lock", in: `{"semaphore":2,"max":2,"holders":["b"]}`, op: func(s *Semaphore) error { _, err := s.Lock("a"); return err }, want: `{"semaphore":1,"max":2,"holders":["a","b"]}`},
		{name: "lock full", in: `{"semaphore":0,"max":1,"holders":["b"]}`, op: func(s *Semaphore) error { _, err := s.Lock("a"); return err }, wantErr: ErrFull},
		{name: "relock", in: `{"semaphore":0,"max":1,"holders":["a"]}`, op: func(s *Semaphore) error { _, err := s.Lock("a"); return err }, want: `{"semaphore":0,"max":1,"holders":["a"]}`},
		{name: "unlock last", in: `{"semaphore":0,"max":1,"holders":["a"]}`, op: func(s *Semaphore) error { return s.Unlock("a") }, want: `{"semaphore":1,"max":1,"holders":null}`},
		{name: "unlock stranger", in: `{"semaphore":0,"max":1,"holders":["a"]}`, op: func(s *Semaphore) error { return s.Unlock("z") }, wantErr: ErrNotHeld},
		{name: "set max up", in: `{"semaphore":0,"max":1,"holders":["a"]}`, op: func(s *Semaphore) error { return s.SetMax(3) }, want: `{"semaphore":2,"max":3,"holders":["a"]}`},
		{name: "set max below holders", in: `{"semaphore":0,"max":2,"holders":["a","b"]}`, op: func(s *Semaphore) error { return s.SetMax(1) }, want: `{"semaphore":-1,"max":1,"holders":["a","b"]}`},
		{name: "set max negative", in: `{"semaphore":1,"max":1,"holders":null}`, op: func(s *Semaphore) error { return s.SetMax(-1) }, wantErr: ErrBadMax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			err = tt.op(&s)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && string(s.Marshal()) != tt.want {
				t.Fatalf("got %s, want %s", s.Marshal(), tt.want)
			}
		})
	}
	if _, err := Parse([]byte(`{"semaphore":"x"}`)); !errors.Is(err, ErrBadValue) {
		t.Fatalf("Parse garbage: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"semaphore":1,"max":1,"holders":null}`))
	f.Add([]byte(`{"semaphore":0,"max":2,"holders":["a","b"]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		s2, err := Parse(s.Marshal())
		if err != nil || s2.Max != s.Max || s2.Semaphore != s.Semaphore || len(s2.Holders) != len(s.Holders) {
			t.Fatalf("round trip %+v -> %+v, %v", s, s2, err)
		}
	})
}

// BenchmarkLockUnlock measures one CAS lock+unlock cycle (2 reads + 2
// transactions) against the floor: one plain Put on the same server.
func BenchmarkLockUnlock(b *testing.B) {
	e := testenv.StartEtcd(b)
	kv, err := Dial([]string{e.Endpoint})
	if err != nil {
		b.Fatal(err)
	}
	defer kv.Close()
	ctx := b.Context()
	c := &Client{KV: kv}
	const n = 200
	start := time.Now()
	for range n {
		if _, err := kv.Put(ctx, "bench/floor", "x"); err != nil {
			b.Fatal(err)
		}
	}
	put := time.Since(start) / n
	start = time.Now()
	for range n {
		if err := c.Lock(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
		if err := c.Unlock(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	cycle := time.Since(start) / n
	testenv.Bench(b, "etcdlock_put_floor", float64(put.Microseconds()), "us")
	testenv.Bench(b, "etcdlock_lock_unlock_cycle", float64(cycle.Microseconds()), "us")
	testenv.Bench(b, "etcdlock_cycle_vs_put", float64(cycle)/float64(put), "ratio")
}

// countKV counts the requests sent through it.
type countKV struct {
	*clientv3.Client
	n atomic.Int64
}

func (c *countKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	c.n.Add(1)
	return c.Client.Get(ctx, key, opts...)
}

func (c *countKV) Txn(ctx context.Context) clientv3.Txn { c.n.Add(1); return c.Client.Txn(ctx) }

func (c *countKV) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	c.n.Add(1)
	return c.Client.Watch(ctx, key, opts...)
}

// A contender that finds the semaphore full waits on one watch: changes
// that leave it full cost it nothing, and the change that frees a slot
// ends the wait. Each holder's start time is recorded for `lock status`.
func TestWaitFreeWatches(t *testing.T) {
	var now time.Time
	e, cli, ctx := startWithClock(t, &now)
	admin := &Client{KV: cli, Now: func() time.Time { return now }}
	if _, err := admin.SetMax(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := admin.Lock(ctx, "holder"); err != nil {
		t.Fatal(err)
	}
	_, hs, err := admin.Holders(ctx)
	if err != nil || len(hs) != 1 || hs[0].ID != "holder" || !hs[0].Since.Equal(now) {
		t.Fatalf("holders %+v, %v; want holder since %v", hs, err, now)
	}

	ckv := &countKV{Client: cli}
	c := &Client{KV: ckv, Watch: ckv, Spread: time.Millisecond}
	err = c.Lock(ctx, "waiter")
	var full *FullError
	if !errors.As(err, &full) || !errors.Is(err, ErrFull) || !slices.Equal(full.Holders, []string{"holder"}) {
		t.Fatalf("Lock on a full semaphore: %v, want a FullError naming holder", err)
	}
	before := ckv.n.Load()
	done := make(chan error, 1)
	go func() { done <- c.WaitFree(ctx, "waiter", full.Rev) }()
	// Changes that keep it full: set-max 1 again, a holder re-locking.
	for range 5 {
		if _, err := admin.SetMax(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("WaitFree returned while the semaphore stayed full: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := admin.Unlock(ctx, "holder"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitFree: %v", err)
	}
	if n := ckv.n.Load() - before; n != 1 {
		t.Errorf("WaitFree sent %d requests, want 1 (the watch)", n)
	}
	if err := c.Lock(ctx, "waiter"); err != nil {
		t.Fatal(err)
	}
	if _, hs, _ := admin.Holders(ctx); len(hs) != 1 || hs[0].ID != "waiter" || hs[0].Since.IsZero() {
		t.Fatalf("holders after: %+v", hs)
	}
	if got := e.Etcdctl(t, "get", "--prefix", "--keys-only", Key("")+"-since/"); strings.TrimSpace(got) != Key("")+"-since/waiter" {
		t.Fatalf("since records %q, want only waiter's", got)
	}

	// Without a watcher there is nothing to wait with.
	if err := (&Client{KV: cli}).WaitFree(ctx, "x", 1); !errors.Is(err, ErrNoWatch) {
		t.Fatalf("WaitFree without a Watcher: %v", err)
	}
	// A canceled wait returns the context's error.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if err := c.WaitFree(cctx, "x", 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled WaitFree: %v", err)
	}
}
