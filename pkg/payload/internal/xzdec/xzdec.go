// Package xzdec decodes a whole in-memory .xz stream whose blocks use the
// single filter LZMA2 straight into a caller's buffer. The output buffer is
// the LZMA dictionary, so there is no window copy, no io.Reader plumbing and
// no allocation: this is the lean path for REPLACE_XZ operations, each a
// complete small stream. Anything else (other filters, several streams)
// returns ErrUnsupported and the caller falls back to a general decoder.
//
// # Byte layout (xz file format 1.0.4, integers little-endian)
//
//	stream header  FD '7zXZ' 00 | flags 00 check | CRC32(flags)
//	block header   size/4-1 | flags (bits 0-1 filters-1, 6 csize, 7 usize)
//	               [csize vli] [usize vli] {filter id vli, props size vli,
//	               props}… | zero padding | CRC32
//	block data     LZMA2 chunks | zero padding to 4 | check (0/4/8/32 bytes)
//	index          00 | count vli | {unpadded vli, usize vli}… | pad | CRC32
//	stream footer  CRC32 | backward size u32 | flags | 'YZ'
//
// LZMA2 chunks: control 00 = end; 01/02 = stored chunk with/without
// dictionary reset, u16be size-1; 1rrxxxxx = LZMA chunk, bits 16-20 of
// unpacked size-1 in x, u16be unpacked size-1, u16be packed size-1, a
// properties byte when rr >= 2 (rr: 0 none, 1 state, 2 state+props,
// 3 state+props+dictionary reset), then a fresh range-coded LZMA stream.
package xzdec

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"hash/crc64"
	"sync"
)

var (
	// ErrUnsupported: a valid stream this decoder does not handle.
	ErrUnsupported = errors.New("xzdec: unsupported stream")
	// ErrCorrupt: the stream is not valid xz/LZMA2.
	ErrCorrupt = errors.New("xzdec: corrupt stream")
	// ErrTooLong: the stream decodes to more bytes than the buffer holds.
	ErrTooLong = errors.New("xzdec: output larger than buffer")
)

var crc64Table = crc64.MakeTable(crc64.ECMA)

// Decoder holds the decoding state (about 160 KiB); reuse one per
// goroutine. The zero value is ready.
type Decoder struct{ d decoder }

var pool = sync.Pool{New: func() any { return new(Decoder) }}

// Decode decodes the single xz stream in into out with a pooled Decoder.
func Decode(in, out []byte) (int, error) {
	x := pool.Get().(*Decoder)
	defer pool.Put(x)
	return x.Decode(in, out)
}

// Decode decodes the single xz stream in into out and returns the number of
// bytes written.
func (x *Decoder) Decode(in, out []byte) (int, error) {
	return x.DecodeProgress(in, out, nil)
}

// DecodeProgress is Decode that calls progress (when not nil), from the
// calling goroutine, each time more of out is final, with the length of
// its final prefix: out[:n] is not written again, so another goroutine may
// read it while decoding goes on. The block checks are verified only at
// each block's end, so the caller must have checked the input otherwise
// (a payload operation's data hash) before it uses that prefix.
func (x *Decoder) DecodeProgress(in, out []byte, progress func(n int)) (int, error) {
	d := &x.d
	d.progress = progress
	defer func() { d.progress = nil }()
	if len(in) < 12+12 || !bytes.Equal(in[:6], []byte{0xFD, '7', 'z', 'X', 'Z', 0}) {
		return 0, ErrCorrupt
	}
	if in[6] != 0 || in[7] > 0x0F || crc32.ChecksumIEEE(in[6:8]) != binary.LittleEndian.Uint32(in[8:12]) {
		return 0, ErrCorrupt
	}
	check := in[7]
	var checkSize int
	switch check {
	case 0:
	case 1:
		checkSize = 4
	case 4:
		checkSize = 8
	case 0x0A:
		checkSize = 32
	default:
		return 0, ErrUnsupported
	}
	p := 12
	n := 0
	for {
		if p >= len(in) {
			return 0, ErrCorrupt
		}
		if in[p] == 0 { // index
			break
		}
		hs := (int(in[p]) + 1) * 4
		if p+hs > len(in) || crc32.ChecksumIEEE(in[p:p+hs-4]) != binary.LittleEndian.Uint32(in[p+hs-4:p+hs]) {
			return 0, ErrCorrupt
		}
		if err := parseBlockHeader(in[p+1 : p+hs-4]); err != nil {
			return 0, err
		}
		p += hs
		start := n
		d.base = n
		used, m, err := d.lzma2(in[p:], out[n:])
		if err != nil {
			return 0, err
		}
		p += used
		n += m
		for p%4 != 0 { // block padding, relative to the stream start
			if p >= len(in) || in[p] != 0 {
				return 0, ErrCorrupt
			}
			p++
		}
		if p+checkSize > len(in) {
			return 0, ErrCorrupt
		}
		c := in[p : p+checkSize]
		switch check {
		case 1:
			if crc32.ChecksumIEEE(out[start:n]) != binary.LittleEndian.Uint32(c) {
				return 0, ErrCorrupt
			}
		case 4:
			if crc64.Checksum(out[start:n], crc64Table) != binary.LittleEndian.Uint64(c) {
				return 0, ErrCorrupt
			}
		case 0x0A:
			if s := sha256.Sum256(out[start:n]); !bytes.Equal(s[:], c) {
				return 0, ErrCorrupt
			}
		}
		p += checkSize
	}
	// Index and footer: check the footer and that the index fills the gap.
	if len(in)-p < 12 {
		return 0, ErrCorrupt
	}
	f := in[len(in)-12:]
	if f[10] != 'Y' || f[11] != 'Z' || !bytes.Equal(f[8:10], in[6:8]) ||
		crc32.ChecksumIEEE(f[4:10]) != binary.LittleEndian.Uint32(f[0:4]) {
		if bytes.Contains(in[p:], []byte{0xFD, '7', 'z', 'X', 'Z', 0}) {
			return 0, ErrUnsupported // concatenated streams
		}
		return 0, ErrCorrupt
	}
	if backward := (int(binary.LittleEndian.Uint32(f[4:8])) + 1) * 4; p+backward != len(in)-12 {
		return 0, ErrCorrupt
	}
	return n, nil
}

// parseBlockHeader accepts exactly one filter, LZMA2 (id 0x21).
func parseBlockHeader(h []byte) error {
	if len(h) < 1 {
		return ErrCorrupt
	}
	flags := h[0]
	if flags&0x3C != 0 {
		return ErrUnsupported
	}
	if flags&3 != 0 {
		return ErrUnsupported // more than one filter
	}
	p := 1
	vli := func() (uint64, bool) {
		var v uint64
		for i := 0; i < 9 && p < len(h); i++ {
			b := h[p]
			p++
			v |= uint64(b&0x7F) << (7 * i)
			if b&0x80 == 0 {
				return v, true
			}
		}
		return 0, false
	}
	if flags&0x40 != 0 {
		if _, ok := vli(); !ok {
			return ErrCorrupt
		}
	}
	if flags&0x80 != 0 {
		if _, ok := vli(); !ok {
			return ErrCorrupt
		}
	}
	id, ok := vli()
	if !ok {
		return ErrCorrupt
	}
	if id != 0x21 {
		return ErrUnsupported
	}
	ps, ok := vli()
	if !ok || ps != 1 || p >= len(h) {
		return ErrCorrupt
	}
	if h[p] > 40 {
		return ErrCorrupt
	}
	p++
	for ; p < len(h); p++ {
		if h[p] != 0 {
			return ErrCorrupt
		}
	}
	return nil
}
