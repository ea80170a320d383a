package engine

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/abupdate/update_engine/internal/parts"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/payload"
)

// TestPayloadApplierKeys: the key source is consulted at every apply; no
// key (or a key that cannot be read) refuses the payload with code 18 and
// nothing written, unless the insecure switch is on and no key exists; the
// plan's version must be the one signed in the payload (code 12).
func TestPayloadApplierKeys(t *testing.T) {
	img := bytes.Repeat([]byte("update engine\n"), 20000)
	p, k := signedPayload(t, img)
	sum := sha256.Sum256(p)
	calls := 0
	key := func() ([]*rsa.PublicKey, error) { calls++; return []*rsa.PublicKey{&k.PublicKey}, nil }
	none := func() ([]*rsa.PublicKey, error) { calls++; return nil, nil }
	broken := func() ([]*rsa.PublicKey, error) { calls++; return nil, errors.New("key file unreadable") }
	for _, tc := range []struct {
		name    string
		a       parts.PayloadApplier
		version string
		want    omaha.Code // 0: applied
	}{
		{"key", parts.PayloadApplier{Keys: key}, "2.0.0", 0},
		{"nil key source", parts.PayloadApplier{}, "2.0.0", omaha.DownloadPayloadPubKeyVerificationError},
		{"no key", parts.PayloadApplier{Keys: none}, "2.0.0", omaha.DownloadPayloadPubKeyVerificationError},
		{"unreadable key", parts.PayloadApplier{Keys: broken}, "2.0.0", omaha.DownloadPayloadPubKeyVerificationError},
		{"unreadable key, insecure", parts.PayloadApplier{Keys: broken, InsecureAllowUnsigned: true}, "2.0.0", omaha.DownloadPayloadPubKeyVerificationError},
		{"no key, insecure", parts.PayloadApplier{Keys: none, InsecureAllowUnsigned: true}, "2.0.0", 0},
		{"offered as another version", parts.PayloadApplier{Keys: key}, "4.0.0", omaha.DownloadPayloadVerificationError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "slot"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			before := calls
			plan := &Plan{Version: tc.version, Size: int64(len(p)), SHA256: sum[:]}
			_, err = tc.a.Apply(t.Context(), plan, bytes.NewReader(p), nil, fileTarget{f, &fileSlots{}}, nil, nil, func(Checkpoint) error { return nil })
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

// limitReader records the process's memory limit at each read.
type limitReader struct {
	r      io.Reader
	limits []int64
}

func (l *limitReader) Read(b []byte) (int, error) {
	l.limits = append(l.limits, debug.SetMemoryLimit(-1))
	return l.r.Read(b)
}

// TestPayloadApplierMemoryLimit: while the operations' data is read the
// process has the apply's memory limit (payload.Options.MemoryLimit),
// and afterwards the one it had.
func TestPayloadApplierMemoryLimit(t *testing.T) {
	p, k := signedPayload(t, bytes.Repeat([]byte("memory limit\n"), 100000))
	const had = 1 << 40
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(had))
	f, err := os.Create(filepath.Join(t.TempDir(), "slot"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &limitReader{r: bytes.NewReader(p)}
	a := parts.PayloadApplier{Keys: func() ([]*rsa.PublicKey, error) { return []*rsa.PublicKey{&k.PublicKey}, nil }}
	if _, err := a.Apply(t.Context(), &Plan{Version: "2.0.0"}, r, nil, fileTarget{f, &fileSlots{}}, nil, nil, func(Checkpoint) error { return nil }); err != nil {
		t.Fatal(err)
	}
	last := r.limits[len(r.limits)-1] // the read that found the end
	if last >= had || last < 16<<20 {
		t.Fatalf("limit while reading the data: %d, want the apply's (tens of MiB)", last)
	}
	if now := debug.SetMemoryLimit(-1); now != had {
		t.Fatalf("limit after the apply: %d, want %d back", now, had)
	}
}

// signedPayload is a full payload of img, version 2.0.0, signed by a new
// key.
func signedPayload(t *testing.T, img []byte) ([]byte, *rsa.PrivateKey) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := payload.Generate(t.Context(), &buf, payload.GenerateOptions{New: bytes.NewReader(img), NewSize: int64(len(img)),
		Keys: []*rsa.PrivateKey{k}, Version: "2.0.0", TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), k
}
