package puff

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"testing"
)

// FuzzPuff puffs whatever Locate finds in arbitrary data: it must not
// panic, and what puffs must huff back to the data.
func FuzzPuff(f *testing.F) {
	data, err := gzipped(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("PK\x03\x04\x14\x00\x00\x00\x08\x00garbage"))
	f.Add([]byte{0x1F, 0x8B, 8, 0x1C, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, data []byte) {
		defl := Locate(data, 1<<20)
		p, puffs, err := Puff(data, defl, 1<<20)
		if err != nil {
			return
		}
		out := make([]byte, len(data))
		if err := Huff(p, defl, puffs, out); err != nil || !bytes.Equal(out, data) {
			t.Fatalf("located streams puffed but did not round-trip: %v", err)
		}
	})
}

// FuzzHuff huffs arbitrary puff streams into one deflate extent: errors,
// never panics.
func FuzzHuff(f *testing.F) {
	data, err := gzipped(nil)
	if err != nil {
		f.Fatal(err)
	}
	defl := Locate(data, 1<<20)
	p, _, err := Puff(data[defl[0].Offset/8:], []BitExtent{{0, defl[0].Length}}, 1<<20)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(p, uint16(defl[0].Length))
	f.Add([]byte{0, 0, 0x40, 0xFF, 0x81}, uint16(10))
	f.Fuzz(func(t *testing.T, p []byte, bits uint16) {
		if bits == 0 {
			return
		}
		out := make([]byte, int(bits+7)/8)
		err := Huff(p, []BitExtent{{0, uint64(bits)}}, []ByteExtent{{0, uint64(len(p))}}, out)
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzDecode parses arbitrary patches.
func FuzzDecode(f *testing.F) {
	f.Add((&Patch{Dst: StreamInfo{Deflates: []BitExtent{{8, 80}}, Puffs: []ByteExtent{{1, 9}}, PuffLength: 12}}).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := Decode(b); err == nil && len(p.Bsdiff) > len(b) {
			t.Fatal("bsdiff part longer than the patch")
		}
	})
}

// TestRepeatAcrossPartsRefused: a dynamic block whose code length repeat
// runs from the literal/length lengths into the distance lengths is valid
// deflate (compress/flate reads it) but puffin's format cannot carry it.
func TestRepeatAcrossPartsRefused(t *testing.T) {
	b := make([]byte, 64)
	w := &bitWriter{b: b, end: 64 * 8}
	w.bits(1|2<<1, 3)         // final, dynamic
	w.bits(1|9<<5|14<<10, 14) // 258 literal/length codes, 10 distance codes, 18 code length codes
	// Code length code: symbols 1 and 18, one bit each (1 is '0', 18 is '1').
	for _, sym := range clOrder[:18] {
		l := uint32(0)
		if sym == 18 || sym == 1 {
			l = 1
		}
		w.bits(l, 3)
	}
	w.bits(0, 1)      // literal 0: length 1
	w.bits(1, 1)      // 18: zeros for 1..138
	w.bits(127, 7)    //
	w.bits(1, 1)      // 18: zeros for 139..255
	w.bits(117-11, 7) //
	w.bits(0, 1)      // 256 (end of block): length 1
	w.bits(1, 1)      // 18: 11 zeros: 257 and the 10 distance codes
	w.bits(0, 7)      //
	w.bits(0, 1)      // literal 0
	w.bits(1, 1)      // end of block
	stream := b[:(w.pos+7)/8]
	got, err := io.ReadAll(flate.NewReader(bytes.NewReader(stream)))
	if err != nil || !bytes.Equal(got, []byte{0}) {
		t.Fatalf("compress/flate: %v, %x", err, got)
	}
	_, _, err = Puff(stream, []BitExtent{{0, w.pos}}, 1<<20)
	if !errors.Is(err, ErrUnpuffable) {
		t.Fatalf("err %v, want ErrUnpuffable", err)
	}
}
