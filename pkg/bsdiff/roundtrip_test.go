package bsdiff

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

type pair struct {
	name     string
	old, new []byte
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// textish returns compressible data with structure, like a binary.
func textish(r *rand.Rand, n int) []byte {
	words := []string{"mov ", "call ", "ret\n", "push ", "\x00\x00\x00\x00", "0x4000", "jmp ", "lea ", "\xff\xfe", "update_engine"}
	var b []byte
	for len(b) < n {
		b = append(b, words[r.IntN(len(words))]...)
		if r.IntN(8) == 0 {
			b = append(b, byte(r.Uint32()), byte(r.Uint32()))
		}
	}
	return b[:n]
}

func pairs() []pair {
	r := rand.New(rand.NewPCG(5, 6))
	base := textish(r, 200000)
	mutate := func(b []byte, k int) []byte {
		b = bytes.Clone(b)
		for i := 0; i < k; i++ {
			b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
		}
		return b
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	return []pair{
		{"both empty", nil, nil},
		{"empty old", nil, base[:5000]},
		{"empty new", base[:5000], nil},
		{"identical", base, bytes.Clone(base)},
		{"one byte", []byte{1}, []byte{2}},
		{"all changed", base[:50000], randBytes(r, 50000)},
		{"random both", randBytes(r, 30000), randBytes(r, 30000)},
		{"sparse edits", base, mutate(base, 200)},
		{"moved blocks", base, cat(base[150000:], base[50000:150000], base[:50000])},
		{"inserted", base, cat(base[:70000], randBytes(r, 3000), base[70000:])},
		{"deleted", base, cat(base[:70000], base[90000:])},
		{"grown", base[:100000], cat(base, textish(r, 50000))},
		{"shrunk", base, base[:30000]},
		{"zeros to data", make([]byte, 100000), base[:100000]},
		{"zero runs", cat(make([]byte, 60000), base[:1000], make([]byte, 60000)), cat(make([]byte, 1000), base[:1000], make([]byte, 120000))},
		{"shifted edits", base, mutate(cat(base[3:], []byte("tail")), 50)},
	}
}

var formats = []Format{BSDF2Brotli, BSDF2BZ2, BSDIFF40, BSDF2None}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, p := range pairs() {
		for _, f := range formats {
			t.Run(p.name+"/"+f.String(), func(t *testing.T) {
				var patch bytes.Buffer
				if err := Diff(ctx, p.old, p.new, &patch, Options{Format: f}); err != nil {
					t.Fatalf("Diff: %v", err)
				}
				var got bytes.Buffer
				n, err := Apply(ctx, bytes.NewReader(p.old), int64(len(p.old)), patch.Bytes(), &got)
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				if n != int64(len(p.new)) || !bytes.Equal(got.Bytes(), p.new) {
					t.Fatalf("Apply wrote %d bytes, want %d; equal=%v", n, len(p.new), bytes.Equal(got.Bytes(), p.new))
				}
				t.Logf("old %d new %d patch %d", len(p.old), len(p.new), patch.Len())
			})
		}
	}
}

// TestPatchSmall checks the diff finds what it should: small edits make
// small patches.
func TestPatchSmall(t *testing.T) {
	ctx := context.Background()
	for _, p := range pairs() {
		var limit int
		switch p.name {
		case "identical", "moved blocks", "deleted", "shrunk":
			limit = 300
		case "sparse edits", "inserted", "shifted edits":
			limit = 5000
		default:
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			var patch bytes.Buffer
			if err := Diff(ctx, p.old, p.new, &patch, Options{}); err != nil {
				t.Fatal(err)
			}
			if patch.Len() > limit {
				t.Errorf("patch is %d bytes, want <= %d", patch.Len(), limit)
			}
		})
	}
}

func TestDiffOptions(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		opts    Options
		wantErr error
	}{
		{"default", Options{}, nil},
		{"brotli q1", Options{BrotliQuality: 1, BrotliLGWin: 16}, nil},
		{"bad format", Options{Format: 99}, ErrFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Diff(ctx, []byte("hello world"), []byte("hello there world"), &bytes.Buffer{}, tc.opts)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("Diff = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestDiffCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := rand.New(rand.NewPCG(1, 1))
	err := Diff(ctx, randBytes(r, 1000), randBytes(r, 1000), &bytes.Buffer{}, Options{})
	if err != context.Canceled {
		t.Fatalf("Diff with canceled ctx = %v, want context.Canceled", err)
	}
}

// TestDiffLongRuns guards against the scan searching from every byte of
// long runs (quadratic; Debian's bsdiff takes minutes on such input).
func TestDiffLongRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := make([]byte, 4<<20)
	copy(old[1<<20:], "some data in the middle of zeros")
	nw := make([]byte, 4<<20+3)
	copy(nw[1<<20+5:], "some data in the middle of zeros!")
	nw[3<<20] = 1
	var patch bytes.Buffer
	if err := Diff(ctx, old, nw, &patch, Options{Format: BSDF2None}); err != nil {
		t.Fatalf("Diff: %v", err)
	}
	var out bytes.Buffer
	if _, err := Apply(ctx, bytes.NewReader(old), int64(len(old)), patch.Bytes(), &out); err != nil || !bytes.Equal(out.Bytes(), nw) {
		t.Fatalf("Apply: %v (equal=%v)", err, bytes.Equal(out.Bytes(), nw))
	}
}
