package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/omaha/server"
	"github.com/abupdate/update_engine/pkg/payload"
	"github.com/abupdate/update_engine/pkg/update1"
)

const slotSize = 16 << 20

// signingKey is the release key of every test world: the omahaWorld signs
// its payloads with it and newHost installs its public half.
var signingKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

func testKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := signingKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// image returns n pseudo-random but compressible bytes.
func image(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := mrand.New(mrand.NewPCG(seed, 3))
	for i := 0; i < n; i += 512 {
		v := byte(r.UintN(256))
		for j := i; j < min(i+512, n); j++ {
			b[j] = v ^ byte(j*int(seed))
		}
	}
	return b
}

// omahaWorld is the dev Omaha server on 127.0.0.1 serving one payload dir,
// with a record of payload Range headers and an optional throttle.
type omahaWorld struct {
	t     testing.TB
	dir   string
	h     *server.Handler
	srv   *httptest.Server
	major uint64 // of the payloads published; 0 = 2
	comp  string // their compression; "" = the generator's default
	// unsigned publishes payloads without a signature (else signed with
	// signingKey).
	unsigned bool
	// procedures go into the payloads published (major 1: Flatcar's
	// kernel and PCR policy).
	procedures []payload.ProcedureFile

	mu     sync.Mutex // guards ranges, delay and cut
	ranges []string
	delay  time.Duration // per 32 KiB served
	cut    int64         // > 0: the next payload download breaks off after this many bytes
}

func newOmaha(t testing.TB) *omahaWorld {
	w := &omahaWorld{t: t, dir: t.TempDir()}
	h, err := server.New(server.Config{Dir: w.dir})
	if err != nil {
		t.Fatal(err)
	}
	w.h = h
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/packages/") {
			w.mu.Lock()
			w.ranges = append(w.ranges, r.Header.Get("Range"))
			d, cut := w.delay, w.cut
			w.cut = 0
			w.mu.Unlock()
			if d > 0 {
				rw = &testenv.SlowWriter{ResponseWriter: rw, Ctx: r.Context(), Delay: d}
			}
			if cut > 0 {
				rw = &cutWriter{ResponseWriter: rw, left: cut}
			}
		}
		h.ServeHTTP(rw, r)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *omahaWorld) url() string { return w.srv.URL + "/v1/update/" }

func (w *omahaWorld) setDelay(d time.Duration) {
	w.mu.Lock()
	w.delay = d
	w.mu.Unlock()
}

func (w *omahaWorld) rangeHeaders() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.ranges...)
}

// publish generates a full payload of img as version and writes it with
// its metadata; badSHA publishes a wrong SHA-256.
func (w *omahaWorld) publish(name, version string, img []byte, badSHA bool) []byte {
	return w.publishDelta(name, version, img, badSHA, "", nil)
}

// publishDelta publishes a delta from old (version from) when old is set.
func (w *omahaWorld) publishDelta(name, version string, img []byte, badSHA bool, from string, old []byte) []byte {
	return w.publishAs(name, version, version, img, badSHA, from, old)
}

// publishAs publishes a payload that carries signed (none when "") and
// that the server offers as version.
func (w *omahaWorld) publishAs(name, version, signed string, img []byte, badSHA bool, from string, old []byte) []byte {
	w.t.Helper()
	var buf bytes.Buffer
	o := payload.GenerateOptions{
		New: bytes.NewReader(img), NewSize: int64(len(img)), Version: signed, ChunkSize: 256 << 10, TempDir: w.t.TempDir(),
		Major: w.major, Compression: w.comp, Procedures: w.procedures,
	}
	if !w.unsigned {
		o.Keys = []*rsa.PrivateKey{testKey(w.t)}
	}
	if old != nil {
		o.Old, o.OldSize = bytes.NewReader(old), int64(len(old))
	}
	res, err := payload.Generate(w.t.Context(), &buf, o)
	if err != nil {
		w.t.Fatal(err)
	}
	if old != nil && !res.Delta {
		w.t.Fatalf("payload for %s is not a delta", name)
	}
	data := buf.Bytes()
	w.publishData(name, version, from, old != nil, data, badSHA)
	return data
}

// publishData publishes the payload data as version.
func (w *omahaWorld) publishData(name, version, from string, delta bool, data []byte, badSHA bool) {
	w.t.Helper()
	sum := sha256.Sum256(data)
	if badSHA {
		sum[0] ^= 0xff
	}
	s1 := sha1.Sum(data)
	if err := os.WriteFile(filepath.Join(w.dir, name), data, 0o644); err != nil {
		w.t.Fatal(err)
	}
	meta, _ := json.Marshal(server.Metadata{File: name, Version: version, Size: int64(len(data)), SourceVersion: from, Delta: delta,
		SHA256: base64.StdEncoding.EncodeToString(sum[:]), SHA1: base64.StdEncoding.EncodeToString(s1[:])})
	if err := os.WriteFile(filepath.Join(w.dir, name+".json"), meta, 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// cutWriter breaks a response off after left bytes (the connection is
// aborted).
type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) >= c.left {
		_, _ = c.ResponseWriter.Write(p[:c.left])
		c.left = 0
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	c.left -= int64(len(p))
	return c.ResponseWriter.Write(p)
}

func (w *omahaWorld) events() string { return server.EventsString(w.h.Events()) }

// host is one machine: a disk, state dirs, a config root and the payload
// public key file (signingKey's, installed by newHost).
type host struct {
	disk, prefs, run, root string
	bus                    string
	key                    string
}

func newHost(t testing.TB, disk string) *host {
	h := &host{disk: disk, prefs: t.TempDir(), run: t.TempDir(), root: t.TempDir(), bus: testenv.DBus(t)}
	if err := os.MkdirAll(filepath.Join(h.root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.key = filepath.Join(h.root, "update-payload-key.pub.pem")
	h.installKey(t)
	if err := os.WriteFile(filepath.Join(h.root, "etc/machine-id"), []byte("0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// installKey writes signingKey's public half to h.key.
func (h *host) installKey(t testing.TB) {
	t.Helper()
	pem, err := payload.MarshalPublicKey(&testKey(t).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.key, pem, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *host) args(server string) []string {
	return []string{"--disk", h.disk, "--booted", "A", "--bus", h.bus, "--config-root", h.root,
		"--prefs-dir", h.prefs, "--run-dir", h.run, "--reboot-required-file", filepath.Join(h.run, "reboot-required"),
		"--server", server, "--release-version", "1.0.0", "--auto-check=false", "--no-health-gate", "--checkpoint-bytes", "262144", "--pubkey", h.key,
		"--postinst", "-"}
}

func (h *host) options(server string) Options {
	return Options{
		Disk: h.disk, Booted: "A", Bus: h.bus, ConfigRoot: h.root, PrefsDir: h.prefs, RunDir: h.run,
		RebootRequiredFile: filepath.Join(h.run, "reboot-required"),
		Overrides:          map[string]string{"SERVER": server, "FLATCAR_RELEASE_VERSION": "1.0.0", "UPDATE_ENGINE_PUBKEY": h.key},
		NoHealthGate:       true,
		Postinst:           "-", // the test images have no post-install program
	}
}

// runDaemon runs Run in-process until the test ends or stop is called.
func runDaemon(t testing.TB, o Options) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var logs bytes.Buffer
	var mu sync.Mutex
	o.Log = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	go func() { done <- Run(ctx, o) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			if t.Failed() {
				mu.Lock()
				t.Logf("daemon log:\n%s", logs.String())
				mu.Unlock()
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// client dials the bus and waits until the daemon answers.
func client(t testing.TB, bus string) *update1.Client {
	t.Helper()
	c, err := update1.Dial(t.Context(), bus)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := c.GetStatus(t.Context())
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not answering: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitOp polls GetStatus until the operation is one of ops.
func waitOp(t testing.TB, c *update1.Client, timeout time.Duration, ops ...string) update1.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := c.GetStatus(t.Context())
		if err == nil {
			for _, op := range ops {
				if st.CurrentOperation == op {
					return st
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %v; last %+v, %v", ops, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readSlot(t testing.TB, disk, name string, n int) []byte {
	t.Helper()
	d, err := slot.Open(t.Context(), disk, slot.Options{Booted: "A"})
	if err != nil {
		t.Fatal(err)
	}
	s := d.Slots()[0]
	if name == "B" {
		s = d.Slots()[1]
	}
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, s.Start); err != nil {
		t.Fatal(err)
	}
	return b
}

func nextBoot(t testing.TB, disk string) string {
	t.Helper()
	slots, next, err := slot.List(disk)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if s.Index == next {
			return s.Name
		}
	}
	return ""
}

func writeSlotA(t testing.TB, disk string, img []byte) {
	t.Helper()
	d, err := slot.Open(t.Context(), disk, slot.Options{Booted: "A"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(img, d.Slots()[0].Start); err != nil {
		t.Fatal(err)
	}
}
