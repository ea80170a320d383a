package bzip2

import (
	"bytes"
	"compress/bzip2"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

func compress(t testing.TB, data []byte, level int) []byte {
	t.Helper()
	var buf bytes.Buffer
	z, err := NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	// Write in odd-sized pieces to cross run and block boundaries.
	for len(data) > 0 {
		k := min(len(data), 7777)
		if _, err := z.Write(data[:k]); err != nil {
			t.Fatal(err)
		}
		data = data[k:]
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testInputs() map[string][]byte {
	r := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 300000)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog. "), 5000)
	skewed := make([]byte, 200000)
	for i := range skewed {
		skewed[i] = byte(r.ExpFloat64() * 4)
	}
	runs := make([]byte, 0, 400000)
	for len(runs) < 400000 {
		runs = append(runs, bytes.Repeat([]byte{byte(r.IntN(3))}, 1+r.IntN(600))...)
	}
	return map[string][]byte{
		"empty":    nil,
		"one":      {42},
		"four":     {7, 7, 7, 7},
		"run255":   bytes.Repeat([]byte{1}, 255),
		"run259":   bytes.Repeat([]byte{1}, 259),
		"zeros1M":  make([]byte, 1<<20),
		"random":   random,
		"text":     text,
		"skewed":   skewed,
		"runs":     runs,
		"periodic": bytes.Repeat([]byte("ab"), 100000),
	}
}

func TestRoundTrip(t *testing.T) {
	for name, data := range testInputs() {
		for _, level := range []int{1, 9} {
			t.Run(name, func(t *testing.T) {
				z := compress(t, data, level)
				got, err := io.ReadAll(bzip2.NewReader(bytes.NewReader(z)))
				if err != nil {
					t.Fatalf("compress/bzip2: %v", err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("round trip of %d bytes gave %d different bytes", len(data), len(got))
				}
			})
		}
	}
}

// TestBunzip2 checks the real bzip2 tool (which verifies CRCs strictly)
// reads our streams, and that we compress about as well as it does.
func TestBunzip2(t *testing.T) {
	testenv.RequireTool(t, "bzip2")
	for name, data := range testInputs() {
		t.Run(name, func(t *testing.T) {
			// Level 1 makes several blocks, checking the combined CRC.
			for _, level := range []int{1, 9} {
				cmd := exec.Command("bzip2", "-dc")
				cmd.Stdin = bytes.NewReader(compress(t, data, level))
				got, err := cmd.Output()
				if err != nil {
					t.Fatalf("bzip2 -d (level %d): %v", level, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("bzip2 -d (level %d) gave %d bytes, want %d", level, len(got), len(data))
				}
			}
			z := compress(t, data, 9)
			cmd := exec.Command("bzip2", "-9c")
			cmd.Stdin = bytes.NewReader(data)
			ref, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if len(z) > len(ref)+len(ref)/20+64 {
				t.Errorf("our size %d, bzip2 -9 %d: more than 5%% larger", len(z), len(ref))
			}
			t.Logf("%s: %d bytes, ours %d, bzip2 %d", name, len(data), len(z), len(ref))
		})
	}
}

func TestWriteAfterClose(t *testing.T) {
	z := NewWriter(io.Discard)
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := z.Write([]byte{1}); err != ErrClosed {
		t.Fatalf("Write after Close = %v, want ErrClosed", err)
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("aaaaabbbbbbbbbbbbbbbbbbbbbbbbcd"))
	f.Add(bytes.Repeat([]byte{0, 1, 2, 3}, 300))
	f.Fuzz(func(t *testing.T, data []byte) {
		z := compress(t, data, 1)
		got, err := io.ReadAll(bzip2.NewReader(bytes.NewReader(z)))
		if err != nil {
			t.Fatalf("compress/bzip2: %v", err)
		}
		if !bytes.Equal(got, data) {
			t.Fatal("round trip differs")
		}
	})
}
