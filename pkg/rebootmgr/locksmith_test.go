package rebootmgr

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/rebootmgr/etcdlock"
	"github.com/abupdate/update_engine/pkg/update1"
)

// clearEnviron blanks every environment variable the reboot manager reads,
// which would otherwise beat the update.conf a test writes
// (t.Setenv restores them).
func clearEnviron(t *testing.T) {
	for _, k := range environKeys {
		t.Setenv(k, "")
		if rest, ok := strings.CutPrefix(k, "LOCKSMITHD_"); ok {
			t.Setenv("LOCKSMITHCTL_"+rest, "")
		}
	}
}

func writeConf(t *testing.T, content string) string {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "update.conf")
	if err := os.WriteFile(conf, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

// startRun runs `run` with fast lock retries, no warning delay and its
// files in dir, until stop; its output goes to the returned buffer.
func startRun(ctx context.Context, dir string, args ...string) (*syncBuffer, func()) {
	var out syncBuffer
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, append(append([]string{"run"}, args...),
			"-state-file", filepath.Join(dir, "state.json"), "-coordinator-file", filepath.Join(dir, "coordinator.conf"),
			"-utmp", filepath.Join(dir, "no-utmp"), "-warn-delay", "0", "-retry-min", "20ms", "-retry-max", "100ms"),
			&out, &out)
	}()
	return &out, func() { cancel(); <-done }
}

// `run` takes its settings from the environment as locksmithd does
// (systemd Environment=, or a shell): they beat update.conf, and flags
// beat them.
func TestMainRunHonoursEnvironment(t *testing.T) {
	clearEnviron(t)
	conf := writeConf(t, "REBOOT_STRATEGY=reboot\nREBOOT_WINDOW_START=03:00\nREBOOT_WINDOW_LENGTH=1h\n")
	t.Setenv("REBOOT_STRATEGY", "off")
	coord := filepath.Join(t.TempDir(), "coordinator.conf")
	code, _, stderr := runMain(t, "run", "-config", conf, "-coordinator-file", coord, "-bus", "unix:path=/nonexistent")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if b, _ := os.ReadFile(coord); string(b) != "NAME=update_engine_reboot_manager\nSTRATEGY=off\nSTATE=disabled\n" {
		t.Fatalf("REBOOT_STRATEGY=off in the environment: coordinator.conf = %q", b)
	}

	// The other keys, read back through the same loading.
	t.Setenv("LOCKSMITHD_REBOOT_WINDOW_START", "Sun 05:30")
	t.Setenv("LOCKSMITHD_REBOOT_WINDOW_LENGTH", "2h")
	t.Setenv("LOCKSMITHD_ENDPOINT", "http://10.0.0.1:2379,http://10.0.0.2:2379")
	t.Setenv("LOCKSMITHD_GROUP", "web")
	t.Setenv("LOCKSMITHD_ETCD_USERNAME", "smith")
	t.Setenv("LOCKSMITHD_ETCD_API", "v2")
	t.Setenv("LOCKSMITHCTL_GROUP", "ctl-only")
	s := newSettings("run", os.Stderr)
	if err := s.fs.Parse([]string{"-config", conf, "-group", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := s.config(os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%v %v %v %s %s %s", cfg.Strategy, windowString(cfg.Window), cfg.Endpoints, cfg.Group, cfg.EtcdUsername, cfg.EtcdAPI)
	want := fmt.Sprintf("off %v [http://10.0.0.1:2379 http://10.0.0.2:2379] from-flag smith v2", windowString(mustWindow(t, "Sun 05:30", "2h")))
	if got != want {
		t.Fatalf("run settings\n got %s\nwant %s", got, want)
	}
	// The lock command reads locksmithctl's names first.
	s = newSettings("lock", os.Stderr)
	if err := s.fs.Parse([]string{"-config", conf}); err != nil {
		t.Fatal(err)
	}
	if cfg, err = s.config(os.Stderr); err != nil || cfg.Group != "ctl-only" {
		t.Fatalf("lock group %q, %v; want LOCKSMITHCTL_GROUP", cfg.Group, err)
	}
}

func mustWindow(t *testing.T, start, length string) *Window {
	t.Helper()
	w, err := ParseWindow(start, length)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// A mixed fleet: with LOCKSMITHD_ETCD_API=v2 the semaphore lives where
// locksmithd and locksmithctl keep it (the v2 keys API), so a slot taken
// by either side is seen as taken by the other; the v3 store stays empty.
func TestLockV2SharedWithLocksmith(t *testing.T) {
	clearEnviron(t)
	e := testenv.StartEtcdV2(t)
	conf := writeConf(t, "LOCKSMITHD_ETCD_API=v2\nLOCKSMITHD_ENDPOINT="+e.Endpoint+"\n")
	key := etcdlock.Key("")
	get := func() string {
		out, err := e.EtcdctlV2(t, "get", key)
		if err != nil {
			t.Fatalf("etcdctl get %s: %v: %s", key, err, out)
		}
		return strings.TrimSpace(out)
	}
	lockCmd := func(args ...string) (int, string, string) {
		return runMain(t, append([]string{"lock", "-config", conf}, args...)...)
	}

	if code, _, errOut := lockCmd("lock", "ours"); code != 0 {
		t.Fatalf("lock: %d %s", code, errOut)
	}
	if got := get(); got != `{"semaphore":0,"max":1,"holders":["ours"]}` {
		t.Fatalf("v2 value after our lock: %q", got)
	}
	if keys := e.Etcdctl(t, "get", "--prefix", "--keys-only", etcdlock.Prefix); keys != "" {
		t.Fatalf("the v2 lock wrote v3 keys %q", keys)
	}
	// locksmithctl sees our slot as taken: a v2 compare-and-swap on the
	// index it read fails once we have written.
	if out, err := e.EtcdctlV2(t, "set", "--swap-with-value", `{"semaphore":1,"max":1,"holders":null}`, key, "x"); err == nil || !strings.Contains(out, "Compare failed") {
		t.Fatalf("etcdctl swapped a stale value: %s", out)
	}
	if code, _, errOut := lockCmd("unlock", "ours"); code != 0 {
		t.Fatalf("unlock: %d %s", code, errOut)
	}
	// locksmithd takes the slot (as its client writes it); we are refused.
	if out, err := e.EtcdctlV2(t, "set", key, `{"semaphore":0,"max":1,"holders":["locksmithd-host"]}`); err != nil {
		t.Fatalf("etcdctl set: %v %s", err, out)
	}
	if code, _, errOut := lockCmd("lock", "ours"); code != 1 || !strings.Contains(errOut, "semaphore is full") {
		t.Fatalf("lock while locksmithd holds the slot: %d %q", code, errOut)
	}
	if code, out, _ := lockCmd("status"); code != 0 || statusShape(out) != "Available: 0\nMax: 1\n\nMACHINE ID\nlocksmithd-host\n" {
		t.Fatalf("status: %d %q", code, out)
	}
	if code, out, errOut := lockCmd("set-max", "3"); code != 0 || out != "Old-Max: 1\nMax: 3\n" {
		t.Fatalf("set-max: %d %q %q", code, out, errOut)
	}
	if got := get(); got != `{"semaphore":2,"max":3,"holders":["locksmithd-host"]}` {
		t.Fatalf("v2 value after set-max: %q", got)
	}
}

// Concurrent lockers on the v2 store: compare-and-swap on modifiedIndex
// lets exactly max of them in and loses no holder.
func TestV2ClientCompareAndSwap(t *testing.T) {
	e := testenv.StartEtcdV2(t)
	c := &etcdlock.V2Client{Endpoints: []string{e.Endpoint}, Group: "race"}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := c.SetMax(ctx, 4); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []string
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("host-%02d", i)
			if err := c.Lock(ctx, id); err == nil {
				mu.Lock()
				won = append(won, id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	s, _, err := c.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(won) != 4 || s.Semaphore != 0 || len(s.Holders) != 4 {
		t.Fatalf("%d lockers won (%v); stored %+v", len(won), won, s)
	}
	for _, id := range won {
		if !s.Holds(id) {
			t.Fatalf("winner %s lost: stored %+v", id, s)
		}
	}
}

// locksmithctl's verbs: lock and unlock default to this machine,
// set-max prints Old-Max/Max, reboot takes this machine's slot and asks
// logind, send-need-reboot emits update_engine's signal.
func TestLockVerbs(t *testing.T) {
	clearEnviron(t)
	e := testenv.StartEtcd(t)
	idFile := filepath.Join(t.TempDir(), "machine-id")
	if err := os.WriteFile(idFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	saved := MachineIDFile
	MachineIDFile = idFile
	t.Cleanup(func() { MachineIDFile = saved })
	addr, logind, _ := startServices(t)
	conf := writeConf(t, "LOCKSMITHD_ENDPOINT="+e.Endpoint+"\n")
	lockCmd := func(args ...string) (int, string, string) {
		return runMain(t, append([]string{"lock", "-config", conf, "-bus", addr}, args...)...)
	}
	status := func() string { _, out, _ := lockCmd("status"); return out }

	if code, out, errOut := lockCmd("set-max", "2"); code != 0 || out != "Old-Max: 1\nMax: 2\n" {
		t.Fatalf("set-max: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := lockCmd("lock"); code != 0 {
		t.Fatalf("lock: %d %s", code, errOut)
	}
	if got := statusShape(status()); got != "Available: 1\nMax: 2\n\nMACHINE ID\n0123456789abcdef0123456789abcdef\n" {
		t.Fatalf("after lock: %q", got)
	}
	if code, _, errOut := lockCmd("unlock"); code != 0 {
		t.Fatalf("unlock: %d %s", code, errOut)
	}
	if got := status(); got != "Available: 2\nMax: 2\n" {
		t.Fatalf("after unlock: %q", got)
	}
	if code, _, errOut := lockCmd("reboot"); code != 0 {
		t.Fatalf("reboot: %d %s", code, errOut)
	}
	if _, r := logind.counts(); r != 1 {
		t.Fatalf("logind Reboot called %d times", r)
	}
	if got := status(); !strings.Contains(got, "0123456789abcdef0123456789abcdef") {
		t.Fatalf("after reboot the slot is not held: %q", got)
	}

	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.AddMatchSignal(dbus.WithMatchInterface(update1.Interface), dbus.WithMatchMember(update1.SignalStatusUpdate)); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan *dbus.Signal, 4)
	conn.Signal(sigs)
	if code, _, errOut := lockCmd("send-need-reboot"); code != 0 {
		t.Fatalf("send-need-reboot: %d %s", code, errOut)
	}
	select {
	case sig := <-sigs:
		st, err := update1.ParseStatus(sig.Body)
		if err != nil || !st.NeedsReboot() || sig.Path != dbus.ObjectPath(update1.Path) {
			t.Fatalf("signal %+v: %+v, %v", sig, st, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no StatusUpdate signal")
	}

	for _, bad := range [][]string{{"set-max"}, {"lock", "a", "b"}, {"frob"}} {
		if code, _, _ := lockCmd(bad...); code != 2 {
			t.Errorf("lock %v: exit %d, want 2", bad, code)
		}
	}
}

// `lock status` against an endpoint that refuses connections fails at
// once with the reason, instead of waiting out the command's timeout.
func TestLockStatusRefusedAtOnce(t *testing.T) {
	clearEnviron(t)
	saved := lockCommandTimeout
	lockCommandTimeout = 10 * time.Minute
	t.Cleanup(func() { lockCommandTimeout = saved })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var out, errOut strings.Builder
	code := Main(ctx, []string{"lock", "-config", writeConf(t, ""), "-endpoint", "http://127.0.0.1:1", "status"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "connection refused") || strings.Contains(errOut.String(), "gave no answer") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if ctx.Err() != nil {
		t.Fatal("lock status waited for minutes on a refused connection")
	}
}

// The daemon on the v2 store in a fleet with locksmithd: while a
// locksmithd host holds the only slot (written as locksmithd writes it),
// `run` waits; once that host unlocks, it takes the slot and reboots.
func TestMainRunV2WaitsForLocksmithd(t *testing.T) {
	clearEnviron(t)
	e := testenv.StartEtcdV2(t)
	key := etcdlock.Key("")
	if out, err := e.EtcdctlV2(t, "set", key, `{"semaphore":0,"max":1,"holders":["locksmithd-host"]}`); err != nil {
		t.Fatalf("etcdctl set: %v %s", err, out)
	}
	addr, logind, engine := startServices(t)
	dir := t.TempDir()
	conf := writeConf(t, "REBOOT_STRATEGY=etcd-lock\nLOCKSMITHD_ENDPOINT="+e.Endpoint+"\n")
	t.Setenv("LOCKSMITHD_ETCD_API", "v2") // as a systemd Environment= line would
	engine.set(t, update1.StatusUpdatedNeedReboot)
	stderr, stop := startRun(t.Context(), dir, "-config", conf, "-bus", addr, "-machine-id", "ours")
	defer stop()

	waitFor(t, "lock retries", func() bool { return strings.Count(stderr.String(), "semaphore is full") >= 3 })
	if _, r := logind.counts(); r != 0 {
		t.Fatalf("rebooted while locksmithd holds the only slot")
	}
	if out, err := e.EtcdctlV2(t, "set", key, `{"semaphore":1,"max":1,"holders":null}`); err != nil {
		t.Fatalf("etcdctl set: %v %s", err, out)
	}
	waitFor(t, "reboot after locksmithd unlocked", func() bool { _, r := logind.counts(); return r == 1 })
	out, err := e.EtcdctlV2(t, "get", key)
	if err != nil || strings.TrimSpace(out) != `{"semaphore":0,"max":1,"holders":["ours"]}` {
		t.Fatalf("v2 value after our reboot: %q, %v", out, err)
	}
}

// locksmithctl's TLS flags, on both stores: with them the lock commands
// reach an etcd that demands client certificates; without, they are
// refused at once.
func TestLockTLSFlags(t *testing.T) {
	clearEnviron(t)
	e := testenv.StartEtcdV2TLS(t)
	conf := writeConf(t, "")
	for _, api := range []string{"v3", "v2"} {
		tls := []string{"-endpoint", e.Endpoint, "-etcd-api", api,
			"-etcd-cafile", e.CAFile, "-etcd-certfile", e.CertFile, "-etcd-keyfile", e.KeyFile}
		lockCmd := func(args ...string) (int, string, string) {
			return runMain(t, append([]string{"lock", "-config", conf}, args...)...)
		}
		if code, _, errOut := lockCmd(append(tls, "lock", "tls-"+api)...); code != 0 {
			t.Fatalf("%s: lock: %d %s", api, code, errOut)
		}
		if code, out, errOut := lockCmd(append(tls, "status")...); code != 0 || !strings.Contains(out, "tls-"+api) {
			t.Fatalf("%s: status: %d %q %q", api, code, out, errOut)
		}
		if code, _, errOut := lockCmd(append(tls, "unlock", "tls-"+api)...); code != 0 {
			t.Fatalf("%s: unlock: %d %s", api, code, errOut)
		}
		if code, _, errOut := lockCmd("-endpoint", e.Endpoint, "-etcd-api", api, "status"); code != 1 || !strings.Contains(errOut, "unreachable") {
			t.Fatalf("%s: status without the TLS flags: %d %q", api, code, errOut)
		}
	}
}
