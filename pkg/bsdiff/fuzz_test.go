package bsdiff

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// fuzzSeeds returns (old, patch) seeds written by Diff in format f.
func fuzzSeeds(f *testing.F, format Format) {
	ctx := context.Background()
	seeds := []struct{ old, new string }{
		{"", ""},
		{"", "new data"},
		{"hello world, hello world", "hello there world, hello world!"},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaabbbbbbbbbbaaaaaaaaaaaaaaaaaa"},
		{"0123456789abcdef0123456789abcdef", "89abcdef01234567zzzz0123456789abcdef"},
	}
	for _, s := range seeds {
		var p bytes.Buffer
		if err := Diff(ctx, []byte(s.old), []byte(s.new), &p, Options{Format: format}); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(s.old), p.Bytes())
	}
}

// checkPatch applies an arbitrary patch: it must not panic, must fail
// with a package sentinel or succeed with exactly Size bytes.
func checkPatch(t *testing.T, old, patch []byte) {
	r, err := NewReader(bytes.NewReader(patch), int64(len(patch)), bytes.NewReader(old), int64(len(old)))
	if err != nil {
		if !isSentinel(err) {
			t.Fatalf("NewReader error %v wraps no sentinel", err)
		}
		return
	}
	const limit = 1 << 20
	n, err := io.CopyN(io.Discard, r, limit)
	switch {
	case err == io.EOF:
		if n != r.Size() {
			t.Fatalf("read %d bytes then EOF, Size %d", n, r.Size())
		}
	case err != nil:
		if !isSentinel(err) {
			t.Fatalf("Read error %v wraps no sentinel", err)
		}
		if _, err2 := r.Read(make([]byte, 1)); err2 != err {
			t.Fatalf("error not sticky: %v then %v", err, err2)
		}
	case n != limit || r.Size() < limit:
		t.Fatalf("CopyN = %d, nil with Size %d", n, r.Size())
	}
}

func isSentinel(err error) bool {
	for _, s := range []error{ErrMagic, ErrHeader, ErrCompressor, ErrCorrupt, ErrOldRange} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func FuzzReaderBSDIFF40(f *testing.F) {
	fuzzSeeds(f, BSDIFF40)
	f.Fuzz(checkPatch)
}

func FuzzReaderBSDF2(f *testing.F) {
	fuzzSeeds(f, BSDF2Brotli)
	fuzzSeeds(f, BSDF2BZ2)
	fuzzSeeds(f, BSDF2None)
	f.Fuzz(checkPatch)
}

// FuzzDiff checks Apply(Diff(old, new)) == new.
func FuzzDiff(f *testing.F) {
	f.Add([]byte("hello world"), []byte("hello there world"))
	f.Add([]byte{}, []byte{1, 2, 3})
	f.Add(bytes.Repeat([]byte{0}, 100), append(bytes.Repeat([]byte{0}, 50), 1))
	f.Fuzz(func(t *testing.T, old, nw []byte) {
		ctx := context.Background()
		var p bytes.Buffer
		if err := Diff(ctx, old, nw, &p, Options{Format: BSDF2None}); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if _, err := Apply(ctx, bytes.NewReader(old), int64(len(old)), p.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), nw) {
			t.Fatal("round trip differs")
		}
	})
}
