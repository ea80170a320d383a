package engine

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/cgroup"
	"github.com/abupdate/update_engine/pkg/payload"
)

// TestThrottledTargetReadsBack (root): the passive slot behind the cgroup
// writer still reads back what was written (the payload applier verifies a
// delta-written slot that way), with O_DIRECT alignment.
func TestThrottledTargetReadsBack(t *testing.T) {
	_, dev := testenv.NewDiskLoop(t, testenv.DiskSpec{SlotSize: 8 << 20})
	d, err := slot.Open(t.Context(), dev, slot.Options{Booted: "A", Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := cgroup.New(t.Context(), cgroup.Config{Name: "update_engine-test-readback", Device: dev, WriteBPS: 512 << 20})
	if err != nil {
		t.Skipf("SKIP: no cgroup I/O limit here: %v", err)
	}
	defer lim.Close()
	tgt, err := DiskSlots{Disk: d, Limiter: lim}.OpenPassive(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	if _, ok := tgt.(limitedTarget); !ok {
		t.Fatalf("target is %T, want the throttled limitedTarget", tgt)
	}
	data := slot.AlignedBuffer(64 << 10)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	if _, err := tgt.WriteAt(data, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := tgt.Sync(); err != nil {
		t.Fatal(err)
	}
	back := slot.AlignedBuffer(len(data))
	if _, err := tgt.ReadAt(back, 1<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, data) {
		t.Fatal("read back differs from what was written")
	}
	active, closer, err := d.Active()
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	other := make([]byte, len(data))
	if _, err := active.ReadAt(other, 1<<20); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other, data) {
		t.Fatal("the write reached the active slot")
	}
}

// TestPayloadApplierKeys: the key source is consulted at every apply; no
// key (or a key that cannot be read) refuses the payload with code 18 and
// nothing written, unless the insecure switch is on and no key exists; the
// plan's version must be the one signed in the payload (code 12).
func TestPayloadApplierKeys(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	img := bytes.Repeat([]byte("update engine\n"), 20000)
	var buf bytes.Buffer
	if _, err := payload.Generate(t.Context(), &buf, payload.GenerateOptions{New: bytes.NewReader(img), NewSize: int64(len(img)),
		Keys: []*rsa.PrivateKey{k}, Version: "2.0.0", TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	p := buf.Bytes()
	sum := sha256.Sum256(p)
	calls := 0
	key := func() ([]*rsa.PublicKey, error) { calls++; return []*rsa.PublicKey{&k.PublicKey}, nil }
	none := func() ([]*rsa.PublicKey, error) { calls++; return nil, nil }
	broken := func() ([]*rsa.PublicKey, error) { calls++; return nil, errors.New("key file unreadable") }
	for _, tc := range []struct {
		name    string
		a       PayloadApplier
		version string
		want    status.Code // 0: applied
	}{
		{"key", PayloadApplier{Keys: key}, "2.0.0", 0},
		{"nil key source", PayloadApplier{}, "2.0.0", status.DownloadPayloadPubKeyVerificationError},
		{"no key", PayloadApplier{Keys: none}, "2.0.0", status.DownloadPayloadPubKeyVerificationError},
		{"unreadable key", PayloadApplier{Keys: broken}, "2.0.0", status.DownloadPayloadPubKeyVerificationError},
		{"unreadable key, insecure", PayloadApplier{Keys: broken, InsecureAllowUnsigned: true}, "2.0.0", status.DownloadPayloadPubKeyVerificationError},
		{"no key, insecure", PayloadApplier{Keys: none, InsecureAllowUnsigned: true}, "2.0.0", 0},
		{"offered as another version", PayloadApplier{Keys: key}, "4.0.0", status.DownloadPayloadVerificationError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "slot"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			before := calls
			plan := &Plan{Version: tc.version, Size: int64(len(p)), SHA256: sum[:]}
			_, err = tc.a.Apply(t.Context(), plan, bytes.NewReader(p), nil, f, nil, nil, func(Checkpoint) error { return nil })
			if got := mapError(err); got != tc.want && !(tc.want == 0 && err == nil) {
				t.Fatalf("code %v (%v), want %v", got, err, tc.want)
			}
			if tc.a.Keys != nil && calls != before+1 {
				t.Fatalf("key source called %d times", calls-before)
			}
			st, _ := f.Stat()
			if tc.want != 0 && st.Size() != 0 {
				t.Fatalf("%d bytes written before %v", st.Size(), err)
			}
			if tc.want == 0 && st.Size() < int64(len(img)) {
				t.Fatalf("slot has %d bytes", st.Size())
			}
		})
	}
}
