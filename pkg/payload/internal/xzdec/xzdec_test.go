package xzdec

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/ulikunitz/xz"
)

func sample(size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 5))
	b := make([]byte, size)
	words := []string{"lzma ", "range ", "coder ", "literal ", "match ", "\n", "\x00\x00\x00\x00"}
	for off := 0; off < size; {
		n := min(size-off, 1+r.IntN(20000))
		switch r.IntN(4) {
		case 0:
			for i := off; i < off+n; {
				i += copy(b[i:off+n], words[r.IntN(len(words))])
			}
		case 1:
			for i := off; i < off+n; i++ {
				b[i] = byte(r.Uint32())
			}
		case 2: // repeat an earlier piece
			if off > 0 {
				src := r.IntN(off)
				for i := off; i < off+n; i++ {
					b[i] = b[src+(i-off)%(off-src)]
				}
			}
		}
		off += n
	}
	return b
}

func ulikunitz(t testing.TB, b []byte, check byte) []byte {
	var buf bytes.Buffer
	w, err := xz.WriterConfig{DictCap: 1 << 21, CheckSum: check}.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func liblzma(t testing.TB, b []byte, args ...string) []byte {
	cmd := exec.Command("xz", append([]string{"-c"}, args...)...)
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("xz: %v", err)
	}
	return out
}

func TestDecode(t *testing.T) {
	type tc struct {
		name string
		data []byte
		enc  func([]byte) []byte
	}
	var cases []tc
	for i, size := range []int{0, 1, 100, 4096, 70000, 2 << 20} {
		d := sample(size, uint64(i))
		cases = append(cases,
			tc{"ulikunitz crc32", d, func(b []byte) []byte { return ulikunitz(t, b, xz.CRC32) }},
			tc{"ulikunitz none", d, func(b []byte) []byte { return ulikunitz(t, b, xz.None) }},
			tc{"ulikunitz crc64", d, func(b []byte) []byte { return ulikunitz(t, b, xz.CRC64) }},
			tc{"ulikunitz sha256", d, func(b []byte) []byte { return ulikunitz(t, b, xz.SHA256) }},
			tc{"xz -6", d, func(b []byte) []byte { return liblzma(t, b, "-6") }},
			tc{"xz -0 crc32", d, func(b []byte) []byte { return liblzma(t, b, "-0", "--check=crc32") }},
			tc{"xz -9e lc=4", d, func(b []byte) []byte { return liblzma(t, b, "--lzma2=preset=9e,lc=4,lp=0,pb=0") }},
			tc{"xz lp=2 pb=4", d, func(b []byte) []byte { return liblzma(t, b, "--lzma2=preset=3,lc=1,lp=2,pb=4") }},
			tc{"xz multiblock", d, func(b []byte) []byte { return liblzma(t, b, "--block-size=30000", "-T1") }},
		)
	}
	for _, c := range cases {
		enc := c.enc(c.data)
		out := make([]byte, len(c.data)+10)
		n, err := Decode(enc, out)
		if err != nil {
			t.Errorf("%s (%d bytes): %v", c.name, len(c.data), err)
			continue
		}
		if !bytes.Equal(out[:n], c.data) {
			t.Errorf("%s (%d bytes): decoded %d bytes that differ", c.name, len(c.data), n)
		}
		if len(c.data) > 0 {
			if _, err := Decode(enc, make([]byte, len(c.data)-1)); !errors.Is(err, ErrTooLong) {
				t.Errorf("%s: short buffer: %v, want ErrTooLong", c.name, err)
			}
		}
	}
}

func TestUnsupported(t *testing.T) {
	d := sample(50000, 9)
	enc := liblzma(t, d, "--x86", "--lzma2")
	if _, err := Decode(enc, make([]byte, len(d))); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("BCJ filter: %v, want ErrUnsupported", err)
	}
}

// FuzzDecode: never panics, and agrees with ulikunitz/xz when both succeed.
func FuzzDecode(f *testing.F) {
	f.Add(ulikunitz(f, sample(3000, 1), xz.CRC32))
	f.Add(ulikunitz(f, sample(10000, 2), xz.None))
	f.Fuzz(func(t *testing.T, in []byte) {
		out := make([]byte, 1<<16)
		n, err := Decode(in, out)
		if err != nil {
			return
		}
		r, err := xz.ReaderConfig{SingleStream: true}.NewReader(bytes.NewReader(in))
		if err != nil {
			return
		}
		want, err := io.ReadAll(io.LimitReader(r, 1<<17))
		if err != nil {
			return
		}
		if !bytes.Equal(want, out[:n]) {
			t.Fatalf("decoded %d bytes, ulikunitz %d, differ", n, len(want))
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	d := sample(2<<20, 3)
	enc := ulikunitz(b, d, xz.CRC32)
	out := make([]byte, len(d))
	b.Run("xzdec", func(b *testing.B) {
		b.SetBytes(int64(len(d)))
		for i := 0; i < b.N; i++ {
			if _, err := Decode(enc, out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ulikunitz", func(b *testing.B) {
		b.SetBytes(int64(len(d)))
		for i := 0; i < b.N; i++ {
			r, _ := xz.ReaderConfig{SingleStream: true}.NewReader(bytes.NewReader(enc))
			io.ReadFull(r, out)
		}
	})
}

// TestDecodeProgress: the prefixes DecodeProgress reports grow, end at the
// decoded length, and are final when reported (later decoding leaves them
// as they were), over multi-block streams with stored and LZMA chunks.
func TestDecodeProgress(t *testing.T) {
	data := sample(3<<20, 11)
	for _, args := range [][]string{{"-6"}, {"-0", "--block-size=700000", "-T1"}} {
		enc := liblzma(t, data, args...)
		out := make([]byte, len(data))
		type report struct {
			n   int
			sum [32]byte
		}
		var reports []report
		var x Decoder
		n, err := x.DecodeProgress(enc, out, func(k int) {
			reports = append(reports, report{k, sha256.Sum256(out[:k])})
		})
		if err != nil || !bytes.Equal(out[:n], data) {
			t.Fatalf("xz %v: %v", args, err)
		}
		if len(reports) < 2 || reports[len(reports)-1].n != n {
			t.Fatalf("xz %v: %d reports, last %v, want several ending at %d", args, len(reports), reports[len(reports)-1].n, n)
		}
		for i, r := range reports {
			if i > 0 && r.n < reports[i-1].n {
				t.Fatalf("xz %v: report %d went back from %d to %d", args, i, reports[i-1].n, r.n)
			}
			if sha256.Sum256(out[:r.n]) != r.sum {
				t.Fatalf("xz %v: the first %d bytes changed after they were reported", args, r.n)
			}
		}
		if _, err := x.Decode(enc, out); err != nil { // no callback left behind
			t.Fatal(err)
		}
	}
}
