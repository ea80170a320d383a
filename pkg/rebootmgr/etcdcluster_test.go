package rebootmgr

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/clock"
	"github.com/abupdate/update_engine/pkg/rebootmgr/etcdlock"
	"github.com/abupdate/update_engine/pkg/update1"
)

// The fleet of the cluster test: n in-process reboot managers, each with
// its own etcd client, machine id and state file, contending for a
// semaphore of max slots on a 3-member etcd cluster. A host's stand-in
// rebooter records the call; the "reboot" takes a random time, after
// which the host boots again (a new manager, a new boot id, update_engine
// idle) and must release its slot.
//
// Time: everything the managers and the lock client time (backoff, the
// lock's recheck and spread, reboot durations, fault durations) runs on
// a clock scale times faster than the wall clock; etcd's own timers
// (elections) are real.
type fleetOpts struct {
	n, max                 int
	scale                  float64
	rebootMin, rebootMax   time.Duration // simulated
	seed                   uint64
	faults                 bool
	staleAfter             time.Duration // real; with faults, for the host that never comes back
	lockTimeout, lockRetry time.Duration // simulated: one etcd call's bound; the lock's Recheck
	// poll: no watch; a full semaphore is an error and the manager polls
	// with its production backoff (5 s doubling to 5 min, jittered), as
	// before WaitFree and as locksmithd does.
	poll bool
}

// Fates of a host when its manager asks for the reboot.
const (
	fateReboot    = iota // reboots, comes back idle
	fateKill             // manager killed mid-reboot (kill -9), restarted on the same boot
	fatePowerCut         // machine dies mid-reboot, boots again still needing the reboot
	fateNeverBack        // machine dies with the slot and never comes back
)

var fateNames = []string{"reboot", "kill -9", "power cut", "never back"}

type fleetHost struct {
	id, state string
	boot      int
	rebootReq chan struct{}

	// requests: every etcd request of the host; waitReqs those sent
	// while its manager waits in Lock.
	requests, waitReqs atomic.Int64
	waitByKind         [3]atomic.Int64 // Get, Txn, Watch while waiting
	waiting            atomic.Bool

	mu        sync.Mutex // guards the fields below
	waitTotal time.Duration
	firstWait time.Duration // real time of the first boot's Lock
	calls     []string      // reboot calls: "boot-N"
	fates     []int
	booted    int    // completed reboots (came back idle)
	resumed   string // the intent phase a killed host's manager restarted from
}

// countingClient counts a host's etcd requests (Get, Txn, Watch).
type countingClient struct {
	cli *clientv3.Client
	h   *fleetHost
}

func (c countingClient) count(kind int) {
	c.h.requests.Add(1)
	if c.h.waiting.Load() {
		c.h.waitReqs.Add(1)
		c.h.waitByKind[kind].Add(1)
	}
}

func (c countingClient) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	c.count(0)
	return c.cli.Get(ctx, key, opts...)
}

func (c countingClient) Txn(ctx context.Context) clientv3.Txn {
	c.count(1)
	return c.cli.Txn(ctx)
}

func (c countingClient) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	c.count(2)
	return c.cli.Watch(ctx, key, opts...)
}

// timedLocker marks the host waiting from its manager's first Lock call
// until one succeeds (through the backoff between calls when polling).
type timedLocker struct {
	Locker
	h     *fleetHost
	first bool
	since *time.Time // start of the current wait; zero = not waiting
}

func (l timedLocker) Lock(ctx context.Context) error {
	if l.since.IsZero() {
		*l.since = time.Now()
		l.h.waiting.Store(true)
	}
	err := l.Locker.Lock(ctx)
	if err != nil {
		return err
	}
	d := time.Since(*l.since)
	*l.since = time.Time{}
	l.h.waiting.Store(false)
	l.h.mu.Lock()
	l.h.waitTotal += d
	if l.first {
		l.h.firstWait = d
	}
	l.h.mu.Unlock()
	return nil
}

type fleetResult struct {
	elapsed, ideal       time.Duration // real
	waits                []time.Duration
	waitReqs             int64
	waitByKind           [3]int64 // Get, Txn, Watch
	waitTime             time.Duration
	hosts                []*fleetHost
	retries              []string // the managers' "…; retrying" lines: etcd errors they rode out
	never                *fleetHost
	statusOut, statusErr string
}

// runEtcdFleet runs the fleet on c until every host that comes back has
// rebooted and released its slot. With faults it also kills the leader,
// freezes a member, restarts members, kills holders mid-reboot, lets one
// holder never come back and has the operator release its slot.
func runEtcdFleet(t testing.TB, c *testenv.EtcdCluster, o fleetOpts) *fleetResult {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rng := rand.New(rand.NewPCG(o.seed, 0x5eed))
	var rngMu sync.Mutex
	randDur := func(lo, hi time.Duration) time.Duration {
		rngMu.Lock()
		defer rngMu.Unlock()
		return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
	}
	fast := newFastClock(time.Now(), o.scale)
	toReal := func(d time.Duration) time.Duration { return time.Duration(float64(d) / o.scale) }
	dir := t.TempDir()
	eps := c.Endpoints()

	admin, err := etcdlock.Dial(eps)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	actx, acancel := context.WithTimeout(ctx, 60*time.Second)
	if _, err := (&etcdlock.Client{KV: admin}).SetMax(actx, o.max); err != nil {
		t.Fatal(err)
	}
	acancel()

	// Fates by the order of reboot calls (with faults): the 3rd caller
	// never comes back; the 10th and 34th are killed mid-reboot; the 22nd
	// loses power mid-reboot.
	fateAt := map[int]int{}
	if o.faults {
		fateAt = map[int]int{3: fateNeverBack, 10: fateKill, 22: fatePowerCut, 34: fateKill}
	}
	var (
		callMu    sync.Mutex // guards calls
		calls     int
		progress  = make(chan int, 1000) // reboot call count, for the fault schedule
		neverHost = make(chan *fleetHost, 1)
	)
	fate := func(h *fleetHost) int {
		h.mu.Lock()
		again := len(h.fates) > 0
		h.mu.Unlock()
		if again {
			return fateReboot // a killed host's second call
		}
		callMu.Lock()
		defer callMu.Unlock()
		calls++
		f, ok := fateAt[calls]
		if !ok {
			f = fateReboot
		}
		progress <- calls
		if f == fateNeverBack {
			neverHost <- h
		}
		return f
	}

	var rebootDur []time.Duration
	var durMu sync.Mutex
	hosts := make([]*fleetHost, o.n)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var errs, retries []string
	fail := func(f string, a ...any) {
		errMu.Lock()
		errs = append(errs, fmt.Sprintf(f, a...))
		errMu.Unlock()
	}
	start := time.Now()
	for i := range o.n {
		h := &fleetHost{id: fmt.Sprintf("host-%02d", i), rebootReq: make(chan struct{}, 1)}
		h.state = filepath.Join(dir, h.id+".json")
		hosts[i] = h
		wg.Go(func() {
			type running struct {
				cancel context.CancelFunc
				done   chan struct{}
				cli    *clientv3.Client
			}
			boot := func(status string, first bool) *running {
				cli, err := etcdlock.Dial(eps)
				if err != nil {
					fail("%s: dial: %v", h.id, err)
					return nil
				}
				cc := countingClient{cli: cli, h: h}
				lc := &etcdlock.Client{KV: cc, Watch: cc, After: fast.After, Recheck: o.lockRetry}
				backoff := clock.Backoff{Min: time.Second, Max: 10 * time.Second, Rand: rand.Float64}
				if o.poll {
					lc.Watch = nil
					backoff = clock.Backoff{Rand: rand.Float64}
				}
				h.mu.Lock()
				bootID := fmt.Sprintf("boot-%d", h.boot)
				h.mu.Unlock()
				m := &Manager{
					Strategy: StrategyEtcdLock,
					Lock: timedLocker{h: h, first: first, since: new(time.Time), Locker: EtcdLocker{Client: lc, ID: h.id,
						Timeout: toReal(o.lockTimeout)}},
					Status:  newMemSource(status),
					Clock:   fast,
					Backoff: backoff,
					Rebooter: funcRebooter(func(ctx context.Context) error {
						h.mu.Lock()
						h.calls = append(h.calls, bootID)
						h.mu.Unlock()
						select {
						case h.rebootReq <- struct{}{}:
						default:
						}
						return nil
					}),
					StateFile: h.state,
					BootID:    func() string { return bootID },
					Logf: func(f string, a ...any) {
						if msg := fmt.Sprintf(f, a...); strings.Contains(msg, "retrying") {
							errMu.Lock()
							retries = append(retries, h.id+": "+msg)
							errMu.Unlock()
						}
					},
				}
				rctx, cancel := context.WithCancel(ctx)
				r := &running{cancel: cancel, done: make(chan struct{}), cli: cli}
				go func() {
					defer close(r.done)
					if err := m.Run(rctx); err != nil {
						fail("%s: Run: %v", h.id, err)
					}
				}()
				return r
			}
			down := func(r *running) { r.cancel(); <-r.done; r.cli.Close() }
			r := boot(update1.StatusUpdatedNeedReboot, true)
			for r != nil {
				select {
				case <-h.rebootReq:
				case <-ctx.Done():
					down(r)
					return
				}
				f := fate(h)
				d := randDur(o.rebootMin, o.rebootMax)
				h.mu.Lock()
				h.fates = append(h.fates, f)
				h.mu.Unlock()
				switch f {
				case fateReboot:
					durMu.Lock()
					rebootDur = append(rebootDur, d)
					durMu.Unlock()
					time.Sleep(toReal(d))
					down(r)
					h.mu.Lock()
					h.boot++
					h.booted++
					h.mu.Unlock()
					r = boot(update1.StatusIdle, false)
					if r == nil {
						return
					}
					deadline := time.Now().Add(4 * time.Minute)
					for !fileHas(h.state, `"phase":""`) && ctx.Err() == nil {
						if time.Now().After(deadline) {
							fail("%s never released its slot after its reboot", h.id)
							break
						}
						time.Sleep(20 * time.Millisecond)
					}
					down(r)
					return
				case fateKill, fatePowerCut:
					time.Sleep(toReal(d / 2))
					// kill -9: nothing of the manager runs any more.
					down(r)
					if f == fatePowerCut {
						h.mu.Lock()
						h.boot++
						h.mu.Unlock()
					}
					time.Sleep(toReal(d / 2))
					in, err := LoadIntent(h.state)
					if err != nil {
						fail("%s: %v", h.id, err)
					}
					h.mu.Lock()
					h.resumed = in.Phase
					h.mu.Unlock()
					r = boot(update1.StatusUpdatedNeedReboot, false)
				case fateNeverBack:
					down(r)
					return
				}
			}
		})
	}

	// The operator: once `lock status` calls the dead host's slot stale,
	// `lock unlock <id>` releases it.
	res := &fleetResult{hosts: hosts}
	var opWG sync.WaitGroup
	if o.faults {
		opWG.Go(func() {
			var h *fleetHost
			select {
			case h = <-neverHost:
			case <-ctx.Done():
				return
			}
			res.never = h
			lockCmd := func(args ...string) (int, string, string) {
				var out, errOut bytes.Buffer
				code := Main(ctx, append([]string{"lock", "-config", filepath.Join(dir, "none.conf"),
					"-endpoint", strings.Join(eps, ","), "-stale-after", o.staleAfter.String()}, args...), &out, &errOut)
				return code, out.String(), errOut.String()
			}
			for ctx.Err() == nil {
				code, out, errOut := lockCmd("status")
				if code == 0 && holderLine(out, h.id) != "" && strings.Contains(holderLine(out, h.id), "stale") {
					res.statusOut, res.statusErr = out, errOut
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			if code, _, errOut := lockCmd("unlock", h.id); code != 0 {
				fail("operator unlock %s: exit %d: %s", h.id, code, errOut)
			}
		})
		opWG.Go(func() { runFaults(t, ctx, c, progress, toReal, fail) })
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	cancel()
	opWG.Wait()
	for _, m := range c.Members {
		_ = m.Cont()
	}
	errMu.Lock()
	for _, e := range errs {
		t.Error(e)
	}
	res.retries = retries
	errMu.Unlock()
	var sum time.Duration
	for _, d := range rebootDur {
		sum += d
	}
	if len(rebootDur) > 0 {
		res.ideal = toReal(time.Duration(float64(sum) / float64(len(rebootDur)) * float64(o.n) / float64(o.max)))
	}
	for _, h := range hosts {
		h.mu.Lock()
		if h != res.never {
			res.waits = append(res.waits, h.firstWait)
		}
		res.waitTime += h.waitTotal
		h.mu.Unlock()
		res.waitReqs += h.waitReqs.Load()
		for k := range res.waitByKind {
			res.waitByKind[k] += h.waitByKind[k].Load()
		}
	}
	slices.Sort(res.waits)
	return res
}

// runFaults kills the leader, freezes a member for 20 s (simulated) and
// restarts a member, each once the fleet has made some progress (reboot
// calls), so that they fall while managers wait and hold slots whatever
// the machine's speed.
func runFaults(t testing.TB, ctx context.Context, c *testenv.EtcdCluster, progress <-chan int, toReal func(time.Duration) time.Duration, fail func(string, ...any)) {
	waitCalls := func(n int) bool {
		for {
			select {
			case got := <-progress:
				if got >= n {
					return true
				}
			case <-ctx.Done():
				return false
			}
		}
	}
	leader := func() *testenv.EtcdMember {
		for ctx.Err() == nil {
			if m := c.Leader(ctx); m != nil {
				return m
			}
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	}
	if !waitCalls(6) {
		return
	}
	if m := leader(); m != nil {
		t.Logf("fault: kill -9 the leader %s", m.Name)
		m.Kill()
		time.Sleep(toReal(3 * time.Second))
		if err := m.Restart(); err != nil {
			fail("restart %s: %v", m.Name, err)
		}
	}
	if !waitCalls(16) {
		return
	}
	if m := leader(); m != nil {
		t.Logf("fault: SIGSTOP the leader %s for 20 s (simulated, %v real)", m.Name, toReal(20*time.Second))
		if err := m.Stop(); err != nil {
			fail("stop %s: %v", m.Name, err)
		}
		time.Sleep(toReal(20 * time.Second))
		if err := m.Cont(); err != nil {
			fail("cont %s: %v", m.Name, err)
		}
	}
	if !waitCalls(28) {
		return
	}
	l := leader()
	for _, m := range c.Members {
		if m != l {
			t.Logf("fault: restart follower %s", m.Name)
			if err := m.Restart(); err != nil {
				fail("restart %s: %v", m.Name, err)
			}
			break
		}
	}
}

// holderLine is id's line in `lock status` output ("" when not a holder).
func holderLine(out, id string) string {
	_, table, _ := strings.Cut(out, "\nHOLDER ")
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == id {
			return line
		}
	}
	return ""
}

// semaphoreHistory reads every revision of the semaphore key from etcd's
// history (a watch from revision 1, with the previous value) up to its
// current revision.
func semaphoreHistory(t testing.TB, eps []string) []*clientv3.Event {
	t.Helper()
	cli, err := etcdlock.Dial(eps)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cur, err := cli.Get(ctx, etcdlock.Key(""))
	if err != nil || len(cur.Kvs) == 0 {
		t.Fatalf("get semaphore: %v", err)
	}
	last := cur.Kvs[0].ModRevision
	var evs []*clientv3.Event
	for resp := range cli.Watch(ctx, etcdlock.Key(""), clientv3.WithRev(1), clientv3.WithPrevKV()) {
		if err := resp.Err(); err != nil {
			t.Fatalf("history watch: %v", err)
		}
		evs = append(evs, resp.Events...)
		if len(evs) > 0 && evs[len(evs)-1].Kv.ModRevision >= last {
			return evs
		}
	}
	t.Fatalf("history watch ended before revision %d: %v", last, ctx.Err())
	return nil
}

// TestEtcdClusterFleetFaults: 50 managers share a 2-slot semaphore on a
// 3-member etcd cluster while the leader is killed, a member is frozen
// for 20 s, members restart, holders are killed mid-reboot and one never
// comes back. etcd's history of the key must show at most 2 holders at
// every revision and each host taking a slot exactly once; every host
// that comes back reboots exactly once; killed holders resume from their
// persisted intent; the lost host's slot is reported stale and released
// by `lock unlock`.
func TestEtcdClusterFleetFaults(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	c := testenv.StartEtcdCluster(t, 3)
	o := fleetOpts{n: 50, max: 2, scale: 5, rebootMin: 2 * time.Second, rebootMax: 5 * time.Second,
		seed: seed, faults: true, staleAfter: 3 * time.Second, lockTimeout: 10 * time.Second, lockRetry: 30 * time.Second}
	res := runEtcdFleet(t, c, o)
	t.Logf("50 hosts in %v (ideal %v); lock wait p50 %v p99 %v; %d requests in %v of waiting; load1 %s",
		res.elapsed.Round(time.Millisecond), res.ideal.Round(time.Millisecond), pct(res.waits, 50), pct(res.waits, 99),
		res.waitReqs, res.waitTime.Round(time.Millisecond), testenv.Load1())

	if res.never == nil {
		t.Fatal("no host was made to never come back")
	}
	// The operator saw the lost slot as stale, with its holder and age.
	line := holderLine(res.statusOut, res.never.id)
	if f := strings.Fields(line); len(f) < 4 || !strings.HasPrefix(f[3], "stale") {
		t.Errorf("lock status line for %s: %q, want id, held-for, since, stale", res.never.id, line)
	} else if d, err := time.ParseDuration(f[1]); err != nil || d <= o.staleAfter {
		t.Errorf("lock status: %s held for %q, want a duration over %v", res.never.id, f[1], o.staleAfter)
	} else if _, err := time.Parse(time.RFC3339, f[2]); err != nil {
		t.Errorf("lock status: since %q: %v", f[2], err)
	}
	t.Logf("lock status before the operator's unlock:\n%s", res.statusOut)
	kinds := map[string]int{}
	for _, r := range res.retries {
		k := r[strings.Index(r, ": ")+2:]
		if i := strings.LastIndex(k, "; retrying"); i >= 0 {
			k = k[:i]
		}
		if i := strings.Index(k, "etcdlock:"); i >= 0 {
			k = k[i:]
		}
		kinds[strings.Replace(k, etcdlock.Key(""), "KEY", 1)]++
	}
	t.Logf("%d etcd errors ridden out by the managers: %v", len(res.retries), kinds)

	// Hosts: every host that comes back rebooted exactly once.
	killed := 0
	for _, h := range res.hosts {
		h.mu.Lock()
		switch {
		case h == res.never:
			if h.booted != 0 || len(h.calls) != 1 {
				t.Errorf("%s (never back): booted %d, calls %v", h.id, h.booted, h.calls)
			}
		case h.booted != 1:
			t.Errorf("%s rebooted %d times, want 1 (calls %v, fates %v)", h.id, h.booted, h.calls, h.fates)
		case len(h.fates) > 1:
			killed++
			// Killed mid-reboot: restarted from its persisted intent, it
			// asked for the reboot again without giving up its slot.
			if h.resumed != PhaseRebooting || len(h.calls) != 2 {
				t.Errorf("%s (fates %v): restarted from intent %q, calls %v; want %q and 2 calls",
					h.id, fateNamesOf(h.fates), h.resumed, h.calls, PhaseRebooting)
			}
			t.Logf("%s: %v, restarted from intent %q, reboot calls %v", h.id, fateNamesOf(h.fates), h.resumed, h.calls)
		case len(h.calls) != 1:
			t.Errorf("%s: reboot calls %v, want 1", h.id, h.calls)
		}
		h.mu.Unlock()
	}
	if killed != 3 {
		t.Errorf("%d hosts killed mid-reboot, want 3", killed)
	}

	// etcd's own history of the key.
	evs := semaphoreHistory(t, c.Endpoints())
	taken := map[string]int{}
	released := map[string]int{}
	peak := 0
	for _, ev := range evs {
		if ev.Type != clientv3.EventTypePut {
			t.Fatalf("revision %d: semaphore deleted", ev.Kv.ModRevision)
		}
		s, err := etcdlock.Parse(ev.Kv.Value)
		if err != nil {
			t.Fatalf("revision %d: %v", ev.Kv.ModRevision, err)
		}
		if len(s.Holders) > o.max && s.Max == o.max {
			t.Errorf("revision %d: %d holders: %s", ev.Kv.ModRevision, len(s.Holders), ev.Kv.Value)
		}
		if s.Semaphore+len(s.Holders) != s.Max {
			t.Errorf("revision %d: inconsistent value %s", ev.Kv.ModRevision, ev.Kv.Value)
		}
		peak = max(peak, len(s.Holders))
		var prev etcdlock.Semaphore
		if ev.PrevKv != nil {
			if prev, err = etcdlock.Parse(ev.PrevKv.Value); err != nil {
				t.Fatalf("revision %d: previous value: %v", ev.Kv.ModRevision, err)
			}
		}
		for _, id := range s.Holders {
			if !prev.Holds(id) {
				taken[id]++
			}
		}
		for _, id := range prev.Holders {
			if !s.Holds(id) {
				released[id]++
			}
		}
	}
	for _, h := range res.hosts {
		if taken[h.id] != 1 || released[h.id] != 1 {
			t.Errorf("%s: took a slot %d times and released it %d times in etcd's history, want once each",
				h.id, taken[h.id], released[h.id])
		}
	}
	if peak != o.max {
		t.Errorf("at most %d holders at once in the history, want %d (slots unused)", peak, o.max)
	}
	final := evs[len(evs)-1].Kv.Value
	if want := fmt.Sprintf(`{"semaphore":%d,"max":%d,"holders":null}`, o.max, o.max); string(final) != want {
		t.Errorf("final value %s, want %s", final, want)
	}
	t.Logf("history: %d revisions of the semaphore", len(evs))
}

func fateNamesOf(fs []int) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fateNames[f])
	}
	return out
}

// pct is the p-th percentile of sorted ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := min(len(ds)-1, (len(ds)*p+99)/100-1)
	return ds[max(i, 0)].Round(time.Millisecond)
}

// BenchmarkEtcdClusterFleet: 50 managers, 2 slots, reboots of 1–3 s on
// a 3-member cluster, real time, no faults. Figures: time for all to
// reboot against the ideal (50/2 × the mean reboot), lock wait p50/p99,
// and etcd requests per waiting manager per minute.
func BenchmarkEtcdClusterFleet(b *testing.B) {
	seed := uint64(time.Now().UnixNano())
	b.Logf("seed %d", seed)
	c := testenv.StartEtcdCluster(b, 3)
	res := runEtcdFleet(b, c, fleetOpts{n: 50, max: 2, scale: 1, rebootMin: time.Second, rebootMax: 3 * time.Second,
		seed: seed, lockTimeout: 30 * time.Second})
	testenv.Bench(b, "etcd_cluster_fleet50_all_rebooted", res.elapsed.Seconds(), "s")
	testenv.Bench(b, "etcd_cluster_fleet50_ideal", res.ideal.Seconds(), "s")
	testenv.Bench(b, "etcd_cluster_fleet50_vs_ideal", res.elapsed.Seconds()/res.ideal.Seconds(), "ratio")
	testenv.Bench(b, "etcd_cluster_lock_wait_p50", pct(res.waits, 50).Seconds(), "s")
	testenv.Bench(b, "etcd_cluster_lock_wait_p99", pct(res.waits, 99).Seconds(), "s")
	testenv.Bench(b, "etcd_cluster_requests_per_waiting_manager", float64(res.waitReqs)/res.waitTime.Minutes(), "req/min")
	testenv.Bench(b, "etcd_cluster_requests_per_manager_wait", float64(res.waitReqs)/50, "req")
	b.Logf("requests while waiting: %d Get, %d Txn, %d Watch over %v of waiting (all managers)",
		res.waitByKind[0], res.waitByKind[1], res.waitByKind[2], res.waitTime.Round(time.Second))

	// The same fleet polling as before (no watch; 5 s → 5 min backoff), on
	// a clock 5× the wall clock to keep it short: figures in simulated
	// time.
	const scale = 5
	c2 := testenv.StartEtcdCluster(b, 3)
	poll := runEtcdFleet(b, c2, fleetOpts{n: 50, max: 2, scale: scale, rebootMin: time.Second, rebootMax: 3 * time.Second,
		seed: seed, lockTimeout: 30 * time.Second, poll: true})
	testenv.Bench(b, "etcd_cluster_fleet50_poll_vs_ideal", poll.elapsed.Seconds()/poll.ideal.Seconds(), "ratio")
	testenv.Bench(b, "etcd_cluster_poll_lock_wait_p50", scale*pct(poll.waits, 50).Seconds(), "s")
	testenv.Bench(b, "etcd_cluster_poll_lock_wait_p99", scale*pct(poll.waits, 99).Seconds(), "s")
	testenv.Bench(b, "etcd_cluster_poll_requests_per_waiting_manager", float64(poll.waitReqs)/(scale*poll.waitTime.Minutes()), "req/min")
	testenv.Bench(b, "etcd_cluster_poll_requests_per_manager_wait", float64(poll.waitReqs)/50, "req")
}
