package daemon

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/update1"
)

// crashBinary builds update_engine with the crashpoints tag once.
var crashBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "update_engine-crash-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "update_engine")
	out, err := exec.Command("go", "build", "-tags", "crashpoints", "-o", bin, "github.com/abupdate/update_engine/cmd/update_engine").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build -tags crashpoints: %v\n%s", err, out)
	}
	return bin, nil
})

// crashCase is one update to kill at every durable write.
type crashCase struct {
	old, new []byte
	publish  func(w *omahaWorld)
	// kernel, when set, is the kernel a Flatcar payload carries, which
	// must end up as the boot directory's flatcar/vmlinuz-b.
	kernel []byte
}

// TestCrashAtEveryWrite kills the real daemon (SIGKILL, from inside, just
// before the write) at each durable write of a full and of a delta update
// in turn, and of a Flatcar payload with a kernel: every pref and record
// write, every GPT write, every marker file, the kernel's temporary file
// and its rename.
// After each kill a restart must finish the same update: the passive slot
// holds the new image, the active one is untouched, the GPT is valid and
// boots the new slot next, and the server never saw a false rollback
// (errorcode=44) nor a second 3/1.
func TestCrashAtEveryWrite(t *testing.T) {
	testenv.RequireTool(t, "go")
	testenv.RequireTool(t, "sgdisk")
	bin, err := crashBinary()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(bin)) })
	v1, v2 := image(6<<20, 11), image(6<<20, 12)
	copy(v2[:3<<20], v1[:3<<20]) // half the image unchanged: a real delta
	// Each payload is generated once; every run's server serves a copy.
	published := func(gen func(w *omahaWorld)) func(w *omahaWorld) {
		tmpl := newOmaha(t)
		gen(tmpl)
		return func(w *omahaWorld) { w.copyFrom(tmpl.dir) }
	}
	cases := map[string]crashCase{
		"full": {old: v1, new: v2, publish: published(func(w *omahaWorld) { w.publish("v2.bin", "2.0.0", v2, false) })},
		"delta": {old: v1, new: v2, publish: published(func(w *omahaWorld) {
			w.publishDelta("v2-delta.bin", "2.0.0", v2, false, "1.0.0", v1)
		})},
		"flatcar": {old: v1, new: v2, kernel: newKernel, publish: published(func(w *omahaWorld) {
			w.major, w.procedures = 1, procedures(newKernel, nil)
			w.publish("v2.bin", "2.0.0", v2, false)
		})},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			points := crashRun(t, bin, c, 0)
			chosen := choosePoints(points)
			t.Logf("%d durable writes in an update; killing at %d of them", len(points), len(chosen))
			for _, n := range chosen {
				t.Run(fmt.Sprintf("%03d_%s", n, sanitize(points[n-1])), func(t *testing.T) { crashRun(t, bin, c, n) })
			}
		})
	}
}

// choosePoints keeps every write whose name differs from the one before
// and the last of each run of equal names (the checkpoints repeat).
func choosePoints(points []string) []int {
	var out []int
	for i, p := range points {
		if i == 0 || points[i-1] != p || i == len(points)-1 || points[i+1] != p {
			out = append(out, i+1)
		}
	}
	return out
}

func sanitize(s string) string {
	s = strings.ReplaceAll(s, " ", "_")
	if i := strings.LastIndex(s, "/"); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// crashRun runs one update on a fresh host. With at > 0 the daemon is
// killed at its at-th durable write, then restarted to finish; with at ==
// 0 it runs through and the points it passed are returned.
func crashRun(t *testing.T, bin string, c crashCase, at int) []string {
	w := newOmaha(t)
	c.publish(w)
	img := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	writeSlotA(t, img, c.old)
	h := newHost(t, img)
	logFile := filepath.Join(t.TempDir(), "points")
	args := h.args(w.url())
	boot := t.TempDir()
	if c.kernel != nil {
		if err := os.MkdirAll(filepath.Join(boot, "flatcar"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(boot, "flatcar", "vmlinuz-b"), kernelB, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--boot-dir", boot)
	}
	var logBuf bytes.Buffer
	var logMu sync.Mutex
	logs := &lockedWriter{w: &logBuf, mu: &logMu}
	logText := func() string { logMu.Lock(); defer logMu.Unlock(); return logBuf.String() }
	// run starts the daemon; exited yields its Wait result once.
	run := func(env ...string) (exited <-chan error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		gone := make(chan struct{}) // closed once reaped, whoever reads done
		go func() { done <- cmd.Wait(); close(gone) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			select {
			case <-gone:
			case <-time.After(10 * time.Second):
			}
		})
		return done
	}
	defer func() {
		if t.Failed() {
			t.Logf("daemon logs:\n%s", logText())
		}
	}()

	exited := run("UPDATE_ENGINE_CRASH_LOG="+logFile, "UPDATE_ENGINE_CRASH_AT="+strconv.Itoa(at))
	cl, err := update1.Dial(t.Context(), h.bus)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	// Ask for the update once the daemon answers (it may be killed at a
	// write it makes while starting).
	var exitErr error
	killed := false
	for deadline := time.Now().Add(60 * time.Second); !killed; time.Sleep(10 * time.Millisecond) {
		select {
		case exitErr = <-exited:
			killed = true
			continue
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon neither answered nor was killed at write %d", at)
		}
		if _, err := cl.GetStatus(t.Context()); err == nil {
			if err := cl.AttemptUpdate(t.Context()); err != nil {
				// The kill may land while the call is in flight
				// (a write made before it returns).
				select {
				case exitErr = <-exited:
					killed = true
				case <-time.After(60 * time.Second):
					t.Fatal(err)
				}
			}
			break
		}
	}
	if at > 0 {
		if !killed {
			select {
			case exitErr = <-exited:
			case <-time.After(60 * time.Second):
				t.Fatalf("daemon not killed at write %d", at)
			}
		}
		if exitErr == nil || !strings.Contains(exitErr.Error(), "killed") {
			t.Fatalf("daemon ended with %v, want killed at write %d", exitErr, at)
		}
		cl.Close()
		fmt.Fprintf(logs, "---- killed at write %d; restarting\n", at)
		run()
		cl = client(t, h.bus)
		if err := cl.AttemptUpdate(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	st := waitOp(t, cl, 60*time.Second, "UPDATE_STATUS_UPDATED_NEED_REBOOT", "UPDATE_STATUS_IDLE")
	if st.CurrentOperation != "UPDATE_STATUS_UPDATED_NEED_REBOOT" {
		det, _ := cl.Detail(t.Context())
		t.Fatalf("update ended %+v (%+v)", st, det)
	}
	if st.NewVersion != "2.0.0" {
		t.Fatalf("status %+v, want new version 2.0.0", st)
	}
	if got := readSlot(t, img, "B", len(c.new)); !bytes.Equal(got, c.new) {
		t.Fatal("slot B does not hold the new image")
	}
	if got := readSlot(t, img, "A", len(c.old)); !bytes.Equal(got, c.old) {
		t.Fatal("slot A (active) was modified")
	}
	if n := nextBoot(t, img); n != "B" {
		t.Fatalf("next boot %q, want B", n)
	}
	if c.kernel != nil {
		if got, _ := os.ReadFile(filepath.Join(boot, "flatcar", "vmlinuz-b")); !bytes.Equal(got, c.kernel) {
			t.Fatal("vmlinuz-b is not the payload's kernel")
		}
	}
	if out, err := exec.Command("sgdisk", "-v", img).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found.") {
		t.Fatalf("sgdisk -v: %v\n%s", err, out)
	}
	// The 3/1 event is sent after UPDATED_NEED_REBOOT is published when
	// it was owed from before the kill; give it a moment to arrive.
	var ev string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ev = w.events()
		if countEvent(ev, "3/1") >= 1 || time.Now().After(deadline) {
			break
		}
	}
	if strings.Contains(ev, "errorcode=44") {
		t.Fatalf("server saw a false rollback: %q", ev)
	}
	if n := countEvent(ev, "3/1"); n > 1 {
		t.Fatalf("server saw %d 3/1 events: %q", n, ev)
	}
	if strings.Contains(logText(), "illegal status transition") {
		t.Fatal("the daemon logged an illegal status transition")
	}
	if at > 0 {
		return nil
	}
	if n := countEvent(ev, "3/1"); n != 1 {
		t.Fatalf("server saw %d 3/1 events in an uninterrupted update: %q", n, ev)
	}
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	var points []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		_, name, _ := strings.Cut(l, " ")
		points = append(points, name)
	}
	if len(points) < 5 {
		t.Fatalf("only %d durable writes logged: %q", len(points), points)
	}
	return points
}

// countEvent counts the events "type/result" in a server.EventsString.
func countEvent(events, ev string) int {
	n := 0
	for _, e := range strings.Split(events, ", ") {
		if e == ev {
			n++
		}
	}
	return n
}

// copyFrom serves the payloads published in another world's directory.
func (w *omahaWorld) copyFrom(dir string) {
	w.t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			w.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(w.dir, e.Name()), b, 0o644); err != nil {
			w.t.Fatal(err)
		}
	}
}
