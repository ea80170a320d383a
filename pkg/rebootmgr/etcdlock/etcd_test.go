package etcdlock

import (
	"context"
	"errors"
	"strings"
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
