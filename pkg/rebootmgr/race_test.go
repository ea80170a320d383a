package rebootmgr

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/clock"
	"github.com/abupdate/update_engine/pkg/rebootmgr/etcdlock"
	"github.com/abupdate/update_engine/pkg/rebootmgr/fleetlock"
	"github.com/abupdate/update_engine/pkg/update1"
)

// simulateFleet runs n hosts that all need a reboot. Each host's manager
// takes the lock and "reboots"; the host then comes back (a new manager,
// update_engine idle), which must release the lock. It returns the ids
// in reboot order.
func simulateFleet(t *testing.T, n int, strategy Strategy, newLocker func(id string) Locker) []string {
	t.Helper()
	dir := t.TempDir()
	fast := newFastClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), 1000)
	var mu sync.Mutex // guards order
	var order []string
	var wg sync.WaitGroup
	for i := range n {
		id := fmt.Sprintf("host-%02d", i)
		wg.Go(func() {
			state := filepath.Join(dir, id+".json")
			newManager := func(src *memSource, reboot Rebooter) *Manager {
				return &Manager{
					Strategy: strategy, Lock: newLocker(id), Status: src, Clock: fast,
					Backoff: clock.Backoff{Rand: rand.Float64}, Rebooter: reboot, StateFile: state,
				}
			}
			rebooted := make(chan struct{}, 1)
			before := startManager(t, newManager(newMemSource(update1.StatusUpdatedNeedReboot), funcRebooter(func(ctx context.Context) error {
				mu.Lock()
				order = append(order, id)
				mu.Unlock()
				rebooted <- struct{}{}
				return nil
			})))
			select {
			case <-rebooted:
			case <-time.After(60 * time.Second):
				t.Errorf("%s never rebooted", id)
				return
			}
			// The machine goes down; it is back 10–40 ms later.
			before.stop(t)
			time.Sleep(time.Duration(10+rand.IntN(30)) * time.Millisecond)
			after := startManager(t, newManager(newMemSource(update1.StatusIdle), funcRebooter(func(ctx context.Context) error {
				t.Errorf("%s rebooted again", id)
				return nil
			})))
			deadline := time.Now().Add(30 * time.Second)
			for !fileHas(state, `"phase":""`) {
				if time.Now().After(deadline) {
					t.Errorf("%s never released the lock", id)
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			after.stop(t)
		})
	}
	wg.Wait()
	return order
}

func TestEtcdLockFleetRace(t *testing.T) {
	e := testenv.StartEtcd(t)
	cli, err := etcdlock.Dial([]string{e.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	admin := &etcdlock.Client{KV: cli}
	if _, err := admin.SetMax(ctx, 2); err != nil {
		t.Fatal(err)
	}
	_, rev, err := admin.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Watch every revision of the key from the one that set max=2.
	wctx, wcancel := context.WithCancel(ctx)
	type seen struct{ maxHolders, revs int64 }
	var (
		wmu     sync.Mutex // guards obs, lastRev, bad
		obs     seen
		lastRev int64
		bad     []string
	)
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		for resp := range cli.Watch(wctx, etcdlock.Key(""), clientv3.WithRev(rev)) {
			wmu.Lock()
			for _, ev := range resp.Events {
				s, err := etcdlock.Parse(ev.Kv.Value)
				if err != nil {
					bad = append(bad, err.Error())
					continue
				}
				obs.revs++
				obs.maxHolders = max(obs.maxHolders, int64(len(s.Holders)))
				if len(s.Holders) > 2 || s.Semaphore+len(s.Holders) != s.Max {
					bad = append(bad, string(ev.Kv.Value))
				}
			}
			lastRev = resp.Header.Revision
			wmu.Unlock()
		}
	}()

	order := simulateFleet(t, 10, StrategyEtcdLock, func(id string) Locker {
		return EtcdLocker{Client: &etcdlock.Client{KV: cli}, ID: id}
	})
	if len(order) != 10 {
		t.Fatalf("%d hosts rebooted, want 10: %v", len(order), order)
	}
	final, err := cli.Get(ctx, etcdlock.Key(""))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "watch to catch up", func() bool {
		wmu.Lock()
		defer wmu.Unlock()
		return lastRev >= final.Header.Revision
	})
	wcancel()
	<-wdone
	wmu.Lock()
	defer wmu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("semaphore over-committed or malformed: %v", bad)
	}
	if obs.maxHolders != 2 {
		t.Errorf("at most %d holders seen at once, want 2 (slots unused)", obs.maxHolders)
	}
	// 10 locks + 10 unlocks, plus the set-max.
	if obs.revs < 21 {
		t.Errorf("watch saw %d revisions, want >= 21", obs.revs)
	}
	got := e.Etcdctl(t, "get", "--print-value-only", etcdlock.Key(""))
	if want := `{"semaphore":2,"max":2,"holders":null}` + "\n"; got != want {
		t.Errorf("etcdctl get = %q, want %q", got, want)
	}
	t.Logf("reboot order %v; %d revisions", order, obs.revs)
}

// fleetLockServer is a FleetLock server (per-group semaphore of max
// slots) that checks the protocol and records the peak holder count.
type fleetLockServer struct {
	max int

	mu      sync.Mutex // guards holders, peak, errors
	holders map[string]map[string]bool
	peak    int
	errors  []string
}

func (s *fleetLockServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, kind, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(fleetlock.Error{Kind: kind, Value: msg})
	}
	if r.Method != http.MethodPost || r.Header.Get("fleet-lock-protocol") != "true" {
		s.mu.Lock()
		s.errors = append(s.errors, fmt.Sprintf("%s %s without protocol header", r.Method, r.URL.Path))
		s.mu.Unlock()
		fail(http.StatusBadRequest, "bad_request", "missing fleet-lock-protocol header")
		return
	}
	var req fleetlock.Request
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.ClientParams.ID == "" || req.ClientParams.Group == "" {
		fail(http.StatusBadRequest, "bad_request", "malformed body")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.holders[req.ClientParams.Group]
	if g == nil {
		g = map[string]bool{}
		s.holders[req.ClientParams.Group] = g
	}
	switch r.URL.Path {
	case fleetlock.PreRebootPath:
		if !g[req.ClientParams.ID] && len(g) >= s.max {
			fail(http.StatusConflict, "failed_lock_semaphore_full", "semaphore currently full")
			return
		}
		g[req.ClientParams.ID] = true
		s.peak = max(s.peak, len(g))
	case fleetlock.SteadyStatePath:
		delete(g, req.ClientParams.ID)
	default:
		fail(http.StatusNotFound, "not_found", r.URL.Path)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func TestFleetLockFleetRace(t *testing.T) {
	srv := &fleetLockServer{max: 2, holders: map[string]map[string]bool{}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	order := simulateFleet(t, 10, StrategyFleetLock, func(id string) Locker {
		return &fleetlock.Client{BaseURL: ts.URL + "/", ID: id, Group: "workers", HTTP: ts.Client()}
	})
	if len(order) != 10 {
		t.Fatalf("%d hosts rebooted, want 10", len(order))
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.errors) > 0 {
		t.Fatalf("protocol errors: %v", srv.errors)
	}
	if srv.peak != 2 {
		t.Errorf("peak holders %d, want 2", srv.peak)
	}
	if n := len(srv.holders["workers"]); n != 0 {
		t.Errorf("%d slots still held: %v", n, srv.holders["workers"])
	}
}
