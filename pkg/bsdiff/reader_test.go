package bsdiff

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"runtime"
	"testing"
)

type triple struct{ d, x, s int64 }

// craft builds an uncompressed BSDF2 patch; fix may edit the header.
func craft(newSize int64, ctrl []triple, diff, extra []byte, fix func(h []byte)) []byte {
	var c []byte
	for _, t := range ctrl {
		var b [24]byte
		putInt(b[0:], t.d)
		putInt(b[8:], t.x)
		putInt(b[16:], t.s)
		c = append(c, b[:]...)
	}
	h := make([]byte, headerLen)
	copy(h, "BSDF2\x00\x00\x00")
	putInt(h[8:], int64(len(c)))
	putInt(h[16:], int64(len(diff)))
	putInt(h[24:], newSize)
	if fix != nil {
		fix(h)
	}
	return bytes.Join([][]byte{h, c, diff, extra}, nil)
}

func TestApplyHostile(t *testing.T) {
	old := []byte("0123456789")
	tests := []struct {
		name    string
		patch   []byte
		want    string
		wantErr error
	}{
		{"valid", craft(6, []triple{{3, 1, 2}, {2, 0, 0}}, []byte{0, 0, 1, 0, 0}, []byte("X"), nil), "013X56", nil},
		{"empty new", craft(0, nil, nil, nil, nil), "", nil},
		{"zero triples first", craft(2, []triple{{0, 0, 0}, {0, 0, 5}, {2, 0, 0}}, []byte{0, 0}, nil, nil), "56", nil},
		{"last seek ignored", craft(1, []triple{{0, 1, -1000}}, nil, []byte("Z"), nil), "Z", nil},
		{"empty", nil, "", ErrMagic},
		{"short magic", []byte("BSDIFF40xx"), "", ErrHeader},
		{"bad magic", bytes.Repeat([]byte("A"), 40), "", ErrMagic},
		{"compressor 3", craft(0, nil, nil, nil, func(h []byte) { h[6] = 3 }), "", ErrCompressor},
		{"negative ctrl len", craft(0, nil, nil, nil, func(h []byte) { putInt(h[8:], -1) }), "", ErrHeader},
		{"ctrl len overruns", craft(0, nil, nil, nil, func(h []byte) { putInt(h[8:], 1<<62) }), "", ErrHeader},
		{"diff len overruns", craft(0, nil, nil, nil, func(h []byte) { putInt(h[16:], math.MaxInt64) }), "", ErrHeader},
		{"negative new size", craft(0, nil, nil, nil, func(h []byte) { putInt(h[24:], -5) }), "", ErrHeader},
		{"new size lies", craft(1<<62, []triple{{2, 0, 0}}, []byte{0, 0}, nil, nil), "01", ErrCorrupt},
		{"negative diff", craft(4, []triple{{-1, 0, 0}}, nil, nil, nil), "", ErrCorrupt},
		{"negative extra", craft(4, []triple{{0, -4, 0}}, nil, nil, nil), "", ErrCorrupt},
		{"diff overruns new", craft(4, []triple{{5, 0, 0}}, make([]byte, 5), nil, nil), "", ErrCorrupt},
		{"extra overruns new", craft(4, []triple{{2, 3, 0}}, make([]byte, 2), []byte("abc"), nil), "", ErrCorrupt},
		{"diff beyond old", craft(12, []triple{{11, 1, 0}}, make([]byte, 11), []byte("a"), nil), "", ErrOldRange},
		{"seek before start", craft(4, []triple{{2, 0, -3}, {2, 0, 0}}, make([]byte, 4), nil, nil), "", ErrOldRange},
		{"seek past end", craft(4, []triple{{2, 0, 9}, {2, 0, 0}}, make([]byte, 4), nil, nil), "", ErrOldRange},
		{"seek min int", craft(4, []triple{{2, 0, -math.MaxInt64}, {2, 0, 0}}, make([]byte, 4), nil, nil), "", ErrOldRange},
		{"seek max int", craft(4, []triple{{2, 0, math.MaxInt64}, {2, 0, 0}}, make([]byte, 4), nil, nil), "", ErrOldRange},
		{"second diff beyond old", craft(4, []triple{{2, 0, 7}, {2, 0, 0}}, make([]byte, 4), nil, nil), "01", ErrOldRange},
		{"ctrl ends early", craft(4, []triple{{2, 0, 0}}, make([]byte, 2), nil, nil), "01", ErrCorrupt},
		{"diff stream short", craft(4, []triple{{4, 0, 0}}, make([]byte, 2), nil, nil), "", ErrCorrupt},
		{"extra stream short", craft(4, []triple{{0, 4, 0}}, nil, []byte("ab"), nil), "", ErrCorrupt},
		{"bad bzip2", craft(4, []triple{{4, 0, 0}}, nil, nil, func(h []byte) { h[5] = compBZ2 }), "", ErrCorrupt},
		{"bad brotli", append(craft(4, nil, nil, nil, func(h []byte) { h[5] = compBrotli; putInt(h[8:], 4) }), 0xff, 0xff, 0xff, 0xff), "", ErrCorrupt},
		{"BSDIFF40 garbage", append(craft(4, nil, nil, nil, func(h []byte) { copy(h, "BSDIFF40") }), "BZh9garbage"...), "", ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got bytes.Buffer
			n, err := Apply(context.Background(), bytes.NewReader(old), int64(len(old)), tc.patch, &got)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("Apply = %v, want %v", err, tc.wantErr)
			}
			if got.String() != tc.want || n != int64(got.Len()) {
				t.Fatalf("Apply wrote %q (n=%d), want %q", got.String(), n, tc.want)
			}
		})
	}
}

func TestReaderSticky(t *testing.T) {
	old := []byte("0123456789")
	patch := craft(4, []triple{{2, 0, 0}, {1, 0, 50}, {1, 0, 0}}, make([]byte, 4), nil, nil)
	r, err := NewReader(bytes.NewReader(patch), int64(len(patch)), bytes.NewReader(old), int64(len(old)))
	if err != nil {
		t.Fatal(err)
	}
	if r.Size() != 4 || r.Header().Magic != "BSDF2" {
		t.Fatalf("Size %d Header %+v", r.Size(), r.Header())
	}
	got, err1 := io.ReadAll(r)
	if string(got) != "01" || !errors.Is(err1, ErrOldRange) {
		t.Fatalf("ReadAll = %q, %v; want \"01\", ErrOldRange", got, err1)
	}
	if _, err2 := r.Read(make([]byte, 1)); err2 != err1 {
		t.Fatalf("second Read = %v, want the same error %v", err2, err1)
	}
}

type failingReaderAt struct{ err error }

func (f failingReaderAt) ReadAt(p []byte, off int64) (int, error) { return 0, f.err }

func TestApplyOldReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	patch := craft(4, []triple{{4, 0, 0}}, make([]byte, 4), nil, nil)
	_, err := Apply(context.Background(), failingReaderAt{boom}, 10, patch, io.Discard)
	if !errors.Is(err, boom) {
		t.Fatalf("Apply = %v, want it to wrap %v", err, boom)
	}
}

func TestApplyCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	patch := craft(0, nil, nil, nil, nil)
	if _, err := Apply(ctx, bytes.NewReader(nil), 0, patch, io.Discard); err != context.Canceled {
		t.Fatalf("Apply = %v, want context.Canceled", err)
	}
}

func TestSignMagnitude(t *testing.T) {
	tests := []struct {
		name string
		v    int64
		enc  []byte
	}{
		{"zero", 0, []byte{0, 0, 0, 0, 0, 0, 0, 0}},
		{"one", 1, []byte{1, 0, 0, 0, 0, 0, 0, 0}},
		{"minus one", -1, []byte{1, 0, 0, 0, 0, 0, 0, 0x80}},
		{"max", math.MaxInt64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		{"min+1", -math.MaxInt64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b [8]byte
			putInt(b[:], tc.v)
			if !bytes.Equal(b[:], tc.enc) {
				t.Fatalf("putInt(%d) = %x, want %x", tc.v, b, tc.enc)
			}
			if got := getInt(tc.enc); got != tc.v {
				t.Fatalf("getInt(%x) = %d, want %d", tc.enc, got, tc.v)
			}
		})
	}
	if got := getInt([]byte{0, 0, 0, 0, 0, 0, 0, 0x80}); got != 0 {
		t.Fatalf("negative zero = %d, want 0", got)
	}
}

// TestReaderBoundedMemory reads a patch that claims a terabyte of new
// data: memory must stay at the fixed buffers, and the lie must surface
// as ErrCorrupt when the extra stream runs out.
func TestReaderBoundedMemory(t *testing.T) {
	extra := bytes.Repeat([]byte("x"), 4<<20)
	patch := craft(1<<40, []triple{{0, 1 << 40, 0}}, nil, extra, nil)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	r, err := NewReader(bytes.NewReader(patch), int64(len(patch)), bytes.NewReader(nil), 0)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r)
	runtime.ReadMemStats(&ms1)
	if n != int64(len(extra)) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Copy = %d, %v; want %d, ErrCorrupt", n, err, len(extra))
	}
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 256<<10 {
		t.Fatalf("reading allocated %d bytes, want <= 256 KiB", alloc)
	}
}

// TestApplyChecksStreamEnds flips a bit in the stream CRC at the very end
// of a BSDIFF40 patch: all new bytes decode, but the patch is corrupt.
func TestApplyChecksStreamEnds(t *testing.T) {
	ctx := context.Background()
	old, nw := []byte("abcdefghijklmnopqrstuvwxyz"), []byte("abcdefgh--klmnopqrstuvwxyz++")
	var patch bytes.Buffer
	if err := Diff(ctx, old, nw, &patch, Options{Format: BSDIFF40}); err != nil {
		t.Fatal(err)
	}
	p := patch.Bytes()
	if _, err := Apply(ctx, bytes.NewReader(old), int64(len(old)), p, io.Discard); err != nil {
		t.Fatalf("intact patch: %v", err)
	}
	p[len(p)-2] ^= 0x10 // inside the extra stream's combined CRC
	if _, err := Apply(ctx, bytes.NewReader(old), int64(len(old)), p, io.Discard); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("patch with a bad stream CRC: Apply = %v, want ErrCorrupt", err)
	}
}
