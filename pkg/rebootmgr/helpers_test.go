package rebootmgr

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abupdate/update_engine/pkg/update1"
)

// fastClock runs scale times faster than the wall clock, starting at base:
// a 5 min backoff takes 300 ms at scale 1000.
type fastClock struct {
	base, real0 time.Time
	scale       float64
}

func newFastClock(base time.Time, scale float64) *fastClock {
	return &fastClock{base: base, real0: time.Now(), scale: scale}
}

func (c *fastClock) Now() time.Time {
	return c.base.Add(time.Duration(float64(time.Since(c.real0)) * c.scale))
}

func (c *fastClock) After(d time.Duration) <-chan time.Time {
	return time.After(time.Duration(float64(d) / c.scale))
}

// memSource is an in-process update_engine status for simulated hosts.
type memSource struct {
	mu sync.Mutex // guards st
	st update1.Status
	ch chan update1.Status
}

func newMemSource(op string) *memSource {
	return &memSource{st: update1.Status{CurrentOperation: op, NewVersion: "2.0.0"}, ch: make(chan update1.Status, 8)}
}

func (m *memSource) GetStatus(ctx context.Context) (update1.Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st, nil
}

func (m *memSource) Watch(ctx context.Context) (<-chan update1.Status, error) { return m.ch, nil }

func (m *memSource) set(op string) {
	m.mu.Lock()
	m.st.CurrentOperation = op
	s := m.st
	m.mu.Unlock()
	m.ch <- s
}

// funcRebooter calls f on Reboot.
type funcRebooter func(ctx context.Context) error

func (f funcRebooter) Reboot(ctx context.Context) error { return f(ctx) }

// waitFor polls cond every 5 ms until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fileHas(path, sub string) bool {
	b, _ := os.ReadFile(path)
	return strings.Contains(string(b), sub)
}

func testLogf(t *testing.T, prefix string) func(string, ...any) {
	return func(f string, a ...any) { t.Logf(prefix+f, a...) }
}

// statusShape is the part of `lock status` output that is locksmithctl's
// (the counts and the MACHINE ID list), which must match it byte for byte;
// the holder table after the list's blank line is ours.
func statusShape(out string) string {
	head, _, found := strings.Cut(out, "\nMACHINE ID\n")
	if !found {
		return out
	}
	list, _, _ := strings.Cut(out[len(head):], "\n\n")
	return head + list + "\n"
}
