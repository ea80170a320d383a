package engine

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/parts"
	"github.com/abupdate/update_engine/internal/prefs"
	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/omaha/server"
	"github.com/abupdate/update_engine/pkg/update1"
)

// rawApplier applies a "raw image" payload: the payload bytes are the
// partition. It checkpoints every 256 KiB with the SHA-256 state, so
// resume works exactly like the real applier's.
type rawApplier struct{}

func (rawApplier) Ready() error { return nil }

func (rawApplier) Apply(ctx context.Context, _ *Plan, r io.Reader, src io.ReaderAt, dst Target, _ Files, from *Checkpoint, save func(Checkpoint) error) (Applied, error) {
	h := sha256.New()
	var off int64
	if from != nil {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(from.State); err != nil {
			return Applied{}, err
		}
		off = from.Offset
	}
	buf := make([]byte, 64<<10)
	sinceCP := 0
	for {
		if err := ctx.Err(); err != nil {
			return Applied{}, err
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if _, werr := dst.WriteAt(buf[:n], off); werr != nil {
				return Applied{}, status.WithCode(omaha.DownloadWriteError, werr)
			}
			h.Write(buf[:n])
			off += int64(n)
			sinceCP += n
			if sinceCP >= 256<<10 {
				sinceCP = 0
				st, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
				if err := save(Checkpoint{Offset: off, State: st}); err != nil {
					return Applied{}, err
				}
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return Applied{Size: off, SHA256: h.Sum(nil)}, nil
		}
		if err != nil {
			return Applied{}, err
		}
	}
}

// fileSlots is an A/B pair of image files with a tiny JSON GPT stand-in.
type fileSlots struct {
	dir    string
	booted string

	mu sync.Mutex // guards the state file and the counts below
	// open counts the passive slot's open writers; markedClosed, how
	// often it was marked unbootable with none (see openSlots).
	open, markedClosed int
}

type slotAttrs struct {
	Priority, Tries int
	Successful      bool
}

func newFileSlots(t *testing.T, size int64, activeContent []byte) *fileSlots {
	t.Helper()
	s := &fileSlots{dir: t.TempDir(), booted: "A"}
	a := make([]byte, size)
	copy(a, activeContent)
	if err := os.WriteFile(filepath.Join(s.dir, "A"), a, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "B"), make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	s.save(map[string]slotAttrs{"A": {Priority: 1, Successful: true}, "B": {}})
	return s
}

func (s *fileSlots) load() map[string]slotAttrs {
	b, _ := os.ReadFile(filepath.Join(s.dir, "gpt.json"))
	m := map[string]slotAttrs{}
	_ = json.Unmarshal(b, &m)
	return m
}
func (s *fileSlots) save(m map[string]slotAttrs) {
	b, _ := json.Marshal(m)
	_ = os.WriteFile(filepath.Join(s.dir, "gpt.json"), b, 0o644)
}
func (s *fileSlots) other(n string) string {
	if n == "A" {
		return "B"
	}
	return "A"
}
func (s *fileSlots) Booted() string        { return s.booted }
func (s *fileSlots) Passive() string       { return s.other(s.booted) }
func (s *fileSlots) PassiveDevice() string { return filepath.Join(s.dir, s.Passive()) }
func (s *fileSlots) Active() (io.ReaderAt, io.Closer, error) {
	f, err := os.Open(filepath.Join(s.dir, s.booted))
	return f, f, err
}
func (s *fileSlots) OpenPassive(context.Context) (Target, error) {
	f, err := os.OpenFile(filepath.Join(s.dir, s.Passive()), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.open++
	s.mu.Unlock()
	return fileTarget{f, s}, nil
}

// fileTarget is a slot image file as a Target, written through the page
// cache.
type fileTarget struct {
	*os.File
	s *fileSlots
}

func (fileTarget) Direct() bool { return false }

func (t fileTarget) Close() error {
	t.s.mu.Lock()
	t.s.open--
	t.s.mu.Unlock()
	return t.File.Close()
}
func (s *fileSlots) MarkPassiveForTrial(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.load()
	m[s.Passive()] = slotAttrs{Priority: 2, Tries: 1}
	a := m[s.booted]
	a.Priority = 1
	m[s.booted] = a
	s.save(m)
	return nil
}
func (s *fileSlots) MarkBootedGood(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.load()
	a := m[s.booted]
	a.Successful, a.Tries = true, 0
	a.Priority = 2
	p := m[s.Passive()]
	p.Priority = min(p.Priority, 1)
	m[s.booted], m[s.Passive()] = a, p
	s.save(m)
	return nil
}
func (s *fileSlots) MarkBootedSuccessful(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.load()
	a := m[s.booted]
	a.Successful, a.Tries = true, 0
	m[s.booted] = a
	s.save(m)
	return nil
}
func (s *fileSlots) MarkPassiveUnbootable(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open == 0 {
		s.markedClosed++
	}
	m := s.load()
	m[s.Passive()] = slotAttrs{}
	s.save(m)
	return nil
}
func (s *fileSlots) RollbackToPassive(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.load()
	p, b := m[s.Passive()], m[s.booted]
	p.Priority, b.Priority = 2, min(b.Priority, 1)
	m[s.Passive()], m[s.booted] = p, b
	s.save(m)
	return nil
}
func (s *fileSlots) Attrs(context.Context) (map[string]SlotAttrs, error) {
	out := map[string]SlotAttrs{}
	for k, a := range s.load() {
		out[k] = SlotAttrs{Priority: a.Priority, Tries: a.Tries, Successful: a.Successful}
	}
	return out, nil
}

// reboot simulates a reboot: gptprio picks the next slot (spending a try)
// and the boot id changes.
func (m *machine) reboot(t *testing.T) string {
	t.Helper()
	s := m.slots
	s.mu.Lock()
	defer s.mu.Unlock()
	attrs := s.load()
	best, bp := "", 0
	for _, n := range []string{"A", "B"} {
		a := attrs[n]
		if (a.Tries > 0 || a.Successful) && a.Priority > bp {
			best, bp = n, a.Priority
		}
	}
	if best == "" {
		t.Fatalf("no bootable slot: %+v", attrs)
	}
	if a := attrs[best]; a.Tries > 0 {
		a.Tries--
		attrs[best] = a
	}
	s.save(attrs)
	s.booted = best
	m.boots++
	m.bootID = fmt.Sprintf("boot-%d", m.boots)
	return best
}
func (s *fileSlots) NextBoot(context.Context) (string, error) {
	m := s.load()
	best, bp := "", 0
	for _, n := range []string{"A", "B"} {
		a := m[n]
		if (a.Tries > 0 || a.Successful) && a.Priority > bp {
			best, bp = n, a.Priority
		}
	}
	return best, nil
}
func (s *fileSlots) CanRollback(context.Context) (bool, error) {
	a := s.load()[s.Passive()]
	return a.Successful && a.Priority > 0, nil
}

// recorder keeps every published snapshot.
type recorder struct {
	mu    sync.Mutex // guards snaps
	snaps []Snapshot
	hook  func(Snapshot)
}

// Observe keeps the published snapshots.
func (r *recorder) Observe(o Observation) {
	if s, ok := o.(StatusChanged); ok {
		r.StatusChanged(s.Snapshot)
	}
}

func (r *recorder) StatusChanged(s Snapshot) {
	r.mu.Lock()
	r.snaps = append(r.snaps, s)
	h := r.hook
	r.mu.Unlock()
	if h != nil {
		h(s)
	}
}

// statuses returns the distinct consecutive statuses seen.
func (r *recorder) statuses() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.snaps {
		if n := s.Status.String(); len(out) == 0 || out[len(out)-1] != n {
			out = append(out, n)
		}
	}
	return out
}

// world is a payload directory served by the real Omaha dev server, with
// a log of payload Range headers.
type world struct {
	t        *testing.T
	dir      string
	omaha    *server.Handler
	srv      *httptest.Server
	mu       sync.Mutex // guards ranges
	ranges   []string
	slowDown time.Duration // per 64 KiB of payload served
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir()}
	h, err := server.New(server.Config{Dir: w.dir})
	if err != nil {
		t.Fatal(err)
	}
	w.omaha = h
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *world) serve(rw http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/packages/") {
		w.mu.Lock()
		w.ranges = append(w.ranges, r.Header.Get("Range"))
		d := w.slowDown
		w.mu.Unlock()
		if d > 0 {
			rw = &testenv.SlowWriter{ResponseWriter: rw, Ctx: r.Context(), Chunk: 64 << 10, Delay: d}
		}
	}
	w.omaha.ServeHTTP(rw, r)
}

// publish writes a payload and its metadata; sha overrides the metadata
// hash (to simulate a corrupt payload).
func (w *world) publish(name, version string, data []byte, sha []byte) {
	w.t.Helper()
	if sha == nil {
		s := sha256.Sum256(data)
		sha = s[:]
	}
	s1 := sha1.Sum(data)
	if err := os.WriteFile(filepath.Join(w.dir, name), data, 0o644); err != nil {
		w.t.Fatal(err)
	}
	meta, _ := json.Marshal(server.Metadata{File: name, Version: version, Size: int64(len(data)),
		SHA256: base64.StdEncoding.EncodeToString(sha), SHA1: base64.StdEncoding.EncodeToString(s1[:])})
	if err := os.WriteFile(filepath.Join(w.dir, name+".json"), meta, 0o644); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) client() *omaha.Client {
	return &omaha.Client{Server: w.srv.URL + "/v1/update/", ReadTimeout: 10 * time.Second}
}

// machine is one engine's persistent state: prefs, run dir, slots.
type machine struct {
	prefsDir, runDir string
	slots            *fileSlots
	version          string
	bootID           string
	boots            int
}

func newMachine(t *testing.T, size int64) *machine {
	return &machine{prefsDir: t.TempDir(), runDir: t.TempDir(), slots: newFileSlots(t, size, []byte("old image")), version: "1.0.0", bootID: "boot-0"}
}

func (m *machine) config(t *testing.T, w *world, rec *recorder) Config {
	t.Helper()
	p, err := prefs.Open(m.prefsDir)
	if err != nil {
		t.Fatal(err)
	}
	c := w.client()
	return Config{
		Checker:            &parts.OmahaChecker{Client: c, Params: omaha.Params{Version: m.version, MachineID: "0123456789abcdef0123456789abcdef", Board: "amd64-usr"}},
		Downloader:         &parts.OmahaDownloader{Client: c},
		Applier:            rawApplier{},
		Slots:              m.slots,
		Prefs:              p,
		Postinst:           parts.NoPostinst{},
		Observer:           rec,
		BootID:             m.bootID,
		Rand:               rand.New(rand.NewPCG(1, 2)),
		CurrentVersion:     m.version,
		Server:             c.Server,
		MarkerPath:         filepath.Join(m.runDir, "update_engine_autoupdate_completed"),
		RebootRequiredPath: filepath.Join(m.runDir, "reboot-required"),
		Schedule:           Schedule{Disabled: true},
		Health:             HealthGate{Disabled: true},
	}
}

// start runs an engine until the test ends or cancel is called.
func start(t *testing.T, cfg Config) (*Engine, context.CancelFunc, <-chan struct{}) {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e, cancel, done
}

// waitFor polls the snapshot until cond holds.
func waitFor(t *testing.T, e *Engine, what string, cond func(Snapshot) bool) Snapshot {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if s := e.Snapshot(); cond(s) {
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; snapshot %+v", what, e.Snapshot())
	return Snapshot{}
}

func idleAfterAttempt(s Snapshot) bool {
	return s.Status == update1.Idle && s.LastChecked != 0
}

func payloadBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(seed), 7))
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

func eventsString(evs []server.RecordedEvent) string { return server.EventsString(evs) }

func fileEquals(t *testing.T, path string, want []byte) bool {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(got[:min(len(got), len(want))], want)
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
func b64(b []byte) string       { return base64.StdEncoding.EncodeToString(b) }

// fakeClock is the injected clock: time moves only by Advance.
type fakeClock struct {
	mu      sync.Mutex // guards now and timers
	now     time.Time
	timers  []fakeTimer
	armedCh chan struct{} // signalled at each After
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_700_000_000, 0), armedCh: make(chan struct{}, 1000)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
	} else {
		c.timers = append(c.timers, fakeTimer{c.now.Add(d), ch})
	}
	c.armedCh <- struct{}{}
	return ch
}

// Advance moves time on by d and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if !tm.at.After(c.now) {
			tm.ch <- c.now
		} else {
			kept = append(kept, tm)
		}
	}
	c.timers = kept
}

// pending is the number of armed timers.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// nextIn is the time until the earliest armed timer (false: none).
func (c *fakeClock) nextIn() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return 0, false
	}
	m := c.timers[0].at
	for _, tm := range c.timers[1:] {
		if tm.at.Before(m) {
			m = tm.at
		}
	}
	return m.Sub(c.now), true
}
