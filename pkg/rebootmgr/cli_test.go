package rebootmgr

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/rebootmgr/etcdlock"
	"github.com/abupdate/update_engine/pkg/update1"
)

// syncBuffer is a bytes.Buffer safe for a goroutine writer and a test
// reader.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = Main(t.Context(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestMainUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"no args", nil, 2},
		{"unknown", []string{"frobnicate"}, 2},
		{"help", []string{"help"}, 0},
		{"lock without verb", []string{"lock"}, 2},
		{"run with junk", []string{"run", "junk"}, 2},
		{"bad flag", []string{"run", "-nope"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, _, _ := runMain(t, tt.args...); code != tt.want {
				t.Fatalf("exit %d, want %d", code, tt.want)
			}
		})
	}
}

func TestMainRunOffWritesDisabled(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "update.conf")
	os.WriteFile(conf, []byte("REBOOT_STRATEGY=off\n"), 0o644)
	coord := filepath.Join(dir, "coordinator.conf")
	code, _, stderr := runMain(t, "run", "-config", conf, "-coordinator-file", coord)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if b, _ := os.ReadFile(coord); string(b) != "NAME=update_engine_reboot_manager\nSTRATEGY=off\nSTATE=disabled\n" {
		t.Fatalf("coordinator.conf = %q", b)
	}
}

// update.conf is read as update_engine reads it (one parser,
// pkg/updateconf): `export KEY=`, quotes and comments count; a malformed
// line and an unknown key are warned about, never fatal.
func TestMainRunLenientConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "update.conf")
	os.WriteFile(conf, []byte("# flatcar-update wrote this\nexport GROUP=beta\nthis is not a setting\n"+
		"export REBOOT_STRATEGY=\"off\"\nSOMETHING_ELSE=1\n"), 0o644)
	coord := filepath.Join(dir, "coordinator.conf")
	code, _, stderr := runMain(t, "run", "-config", conf, "-coordinator-file", coord)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if b, _ := os.ReadFile(coord); !strings.Contains(string(b), "STRATEGY=off\n") {
		t.Fatalf("coordinator.conf = %q", b)
	}
	for _, want := range []string{conf + ":3", conf + ":5: updateconf: unknown key SOMETHING_ELSE"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q does not warn about %q", stderr, want)
		}
	}
}

// A holder that took the lock and never came back blocks the fleet until
// the operator runs `lock unlock <id>`; then the waiting host reboots.
func TestMainRecoversKilledHolder(t *testing.T) {
	e := testenv.StartEtcd(t)
	addr, logind, engine := startServices(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "update.conf")
	// update.conf says off and a dead endpoint; the flags override both.
	os.WriteFile(conf, []byte("REBOOT_STRATEGY=off\nLOCKSMITHD_ENDPOINT=http://127.0.0.1:1\n"), 0o644)
	t.Setenv("LOCKSMITHCTL_ENDPOINT", e.Endpoint)

	if code, out, errOut := runMain(t, "lock", "-config", conf, "set-max", "1"); code != 0 || out != "Old-Max: 1\nMax: 1\n" {
		t.Fatalf("set-max: %d %q %q", code, out, errOut)
	}
	// "dead" takes the only slot, then its machine never comes back.
	cli, err := etcdlock.Dial([]string{e.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := (&etcdlock.Client{KV: cli}).Lock(ctx, "dead"); err != nil {
		t.Fatal(err)
	}

	engine.set(t, update1.StatusUpdatedNeedReboot)
	coord := filepath.Join(dir, "coordinator.conf")
	stderr, stopRun := startRun(ctx, dir, "-config", conf, "-strategy", "etcd-lock", "-endpoint", e.Endpoint,
		"-bus", addr, "-machine-id", "alive")
	defer stopRun()

	// It waits on a watch, not by polling: one "full" then silence.
	waitFor(t, "lock wait", func() bool {
		return strings.Contains(stderr.String(), "semaphore is full (holders dead); watching for a free slot")
	})
	if _, r := logind.counts(); r != 0 {
		t.Fatalf("rebooted while the dead host holds the only slot")
	}
	if !fileHas(coord, "STATE=reboot-planned") {
		t.Fatalf("coordinator not reboot-planned")
	}
	code, out, _ := runMain(t, "lock", "status")
	if code != 0 || statusShape(out) != "Available: 0\nMax: 1\n\nMACHINE ID\ndead\n" {
		t.Fatalf("status: %d %q", code, out)
	}

	// The operator releases the dead host's slot.
	if code, _, errOut := runMain(t, "lock", "unlock", "dead"); code != 0 {
		t.Fatalf("unlock: %d %s", code, errOut)
	}
	waitFor(t, "reboot after unlock", func() bool { _, r := logind.counts(); return r == 1 })
	code, out, _ = runMain(t, "lock", "status")
	if code != 0 || statusShape(out) != "Available: 0\nMax: 1\n\nMACHINE ID\nalive\n" {
		t.Fatalf("status after: %d %q", code, out)
	}
	if code, _, _ := runMain(t, "lock", "unlock", "dead"); code != 1 {
		t.Fatalf("second unlock of dead: exit %d, want 1", code)
	}
	if got := e.Etcdctl(t, "get", "--print-value-only", etcdlock.Key("")); got != `{"semaphore":0,"max":1,"holders":["alive"]}`+"\n" {
		t.Fatalf("etcdctl get = %q", got)
	}
	t.Logf("manager log:\n%s", stderr.String())
}
