package payload

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// signWith is what an HSM does with a digest from ReadDigests.
func signWith(t *testing.T, k *rsa.PrivateKey, digest []byte) []byte {
	t.Helper()
	s, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSignLater: a payload with reserved signatures, signed by
// InsertSignatures, is byte for byte the payload Generate signs in one step
// (PKCS#1 v1.5 signatures are deterministic), for both majors; its digests
// are the ones Generate reported; OpDuration and Progress see every
// operation.
func TestSignLater(t *testing.T) {
	ks := keys(t, 2)
	img := testImage(1<<20, 5)
	for _, major := range []uint64{1, 2} {
		var progressed int64
		o := GenerateOptions{Major: major, SignatureSizes: []int{256, 256}, ChunkSize: 64 << 10,
			Progress: func(n int64) { progressed += n }}
		o.New, o.NewSize, o.TempDir = bytes.NewReader(img), int64(len(img)), t.TempDir()
		var buf bytes.Buffer
		res, err := Generate(context.Background(), &buf, o)
		if err != nil {
			t.Fatal(err)
		}
		if progressed != int64(len(img)) {
			t.Errorf("major %d: Progress counted %d bytes of %d", major, progressed, len(img))
		}
		oneStep := generate(t, img, GenerateOptions{Major: major, Keys: ks, ChunkSize: 64 << 10})
		if buf.Len() != len(oneStep) {
			t.Fatalf("major %d: reserved payload is %d bytes, signed one %d", major, buf.Len(), len(oneStep))
		}
		p := filepath.Join(t.TempDir(), "p")
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		d, _, err := ReadDigests(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(d.Payload, res.Digests.Payload) || !bytes.Equal(d.Metadata, res.Digests.Metadata) || (major == 2) != (d.Metadata != nil) {
			t.Fatalf("major %d: ReadDigests %x/%x, Generate said %x/%x", major, d.Payload, d.Metadata, res.Digests.Payload, res.Digests.Metadata)
		}
		ps := [][]byte{signWith(t, ks[0], d.Payload), signWith(t, ks[1], d.Payload)}
		var ms [][]byte
		if major == 2 {
			ms = [][]byte{signWith(t, ks[0], d.Metadata), signWith(t, ks[1], d.Metadata)}
		}
		// The wrong key is refused and nothing is written.
		other := keys(t, 3)[2]
		if _, err := InsertSignatures(f, int64(buf.Len()), ps, ms, pubs(other)); !errors.Is(err, ErrSignatureMismatch) {
			t.Fatalf("major %d: signatures checked against another key: %v, want ErrSignatureMismatch", major, err)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, buf.Bytes()) {
			t.Fatalf("major %d: a refused InsertSignatures wrote to the payload", major)
		}
		if _, err := InsertSignatures(f, int64(buf.Len()), ps, ms, pubs(ks...)); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(p)
		if !bytes.Equal(got, oneStep) {
			t.Fatalf("major %d: signed later differs from signed in one step", major)
		}
		ops := map[string]int{}
		tf := targetFile(t, len(img))
		r, err := Apply(context.Background(), bytes.NewReader(got), tf, Options{Keys: pubs(ks[1]),
			OpDuration: func(typ string, d time.Duration) { ops[typ]++ }})
		if err != nil {
			t.Fatalf("major %d: apply: %v", major, err)
		}
		n := 0
		for _, c := range ops {
			n += c
		}
		if n != r.Ops || n == 0 {
			t.Errorf("major %d: OpDuration called %d times (%v) for %d operations", major, n, ops, r.Ops)
		}
		if !bytes.Equal(readAll(t, tf, len(img)), img) {
			t.Fatalf("major %d: applied image differs", major)
		}
	}
}
