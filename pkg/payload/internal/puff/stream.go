package puff

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// BitExtent is a range of bits; ByteExtent a range of bytes.
type (
	BitExtent  struct{ Offset, Length uint64 }
	ByteExtent struct{ Offset, Length uint64 }
)

// checkExtents checks that deflates are sorted, disjoint, non-empty and
// inside size bytes.
func checkExtents(deflates []BitExtent, size int) error {
	var end uint64
	for _, d := range deflates {
		if d.Length == 0 || d.Offset < end || d.Offset+d.Length < d.Offset || d.Offset+d.Length > uint64(size)*8 {
			return fmt.Errorf("%w: deflate extent %+v in %d bytes", ErrCorrupt, d, size)
		}
		end = d.Offset + d.Length
	}
	return nil
}

// rawBytes is how many puff stream bytes carry the bits [a, b) between
// two deflates (or the stream's ends): none when a == b, else every byte
// they touch.
func rawBytes(a, b uint64) uint64 {
	if a == b {
		return 0
	}
	return (b+7)/8 - a/8
}

// Puff returns the puff stream of data whose deflates (sorted, each one
// or more whole deflate blocks) are given, and each deflate's puff extent
// in it. limit bounds the puff stream's size (ErrTooLarge).
func Puff(data []byte, deflates []BitExtent, limit int) ([]byte, []ByteExtent, error) {
	if err := checkExtents(deflates, len(data)); err != nil {
		return nil, nil, err
	}
	p := &puffer{r: bitReader{b: data}, w: puffWriter{limit: limit}}
	puffs := make([]ByteExtent, 0, len(deflates))
	var pos uint64
	for _, d := range deflates {
		p.w.out = appendRaw(p.w.out, data, pos, d.Offset)
		start := len(p.w.out)
		p.r.pos, p.r.end = d.Offset, d.Offset+d.Length
		for p.r.pos < p.r.end {
			if err := p.block(); err != nil {
				return nil, nil, fmt.Errorf("deflate at bit %d: %w", d.Offset, err)
			}
		}
		if err := p.w.flush(); err != nil {
			return nil, nil, err
		}
		puffs = append(puffs, ByteExtent{uint64(start), uint64(len(p.w.out) - start)})
		pos = d.Offset + d.Length
	}
	p.w.out = appendRaw(p.w.out, data, pos, uint64(len(data))*8)
	if len(p.w.out) > limit {
		return nil, nil, ErrTooLarge
	}
	return p.w.out, puffs, nil
}

// appendRaw appends the puff stream bytes of data's bits [a, b): the
// bytes they touch, the first shifted down past bits before a, the last
// masked to the bits before b.
func appendRaw(out, data []byte, a, b uint64) []byte {
	n := rawBytes(a, b)
	if n == 0 {
		return out
	}
	at := len(out)
	out = append(out, data[a/8:a/8+n]...)
	if b&7 != 0 {
		out[len(out)-1] &= byte(1)<<(b&7) - 1
	}
	out[at] >>= a & 7
	return out
}

// Huff writes into out the data whose puff stream is puff, given its
// deflates and their puff extents (as Puff returned them). Bytes of out
// past the data are zeroed; the data must fit in out.
func Huff(puff []byte, deflates []BitExtent, puffs []ByteExtent, out []byte) error {
	return HuffFrom(bytes.NewReader(puff), uint64(len(puff)), deflates, puffs, out)
}

// HuffFrom is Huff reading the puff stream, of size bytes, from r, with
// buffers of a fixed size.
func HuffFrom(r io.Reader, size uint64, deflates []BitExtent, puffs []ByteExtent, out []byte) error {
	if err := checkExtents(deflates, len(out)); err != nil {
		return err
	}
	if len(puffs) != len(deflates) {
		return fmt.Errorf("%w: %d deflates, %d puffs", ErrCorrupt, len(deflates), len(puffs))
	}
	clear(out)
	br := bufio.NewReaderSize(r, 32<<10)
	h := &huffer{w: bitWriter{b: out}, r: puffReader{r: br}}
	var pos, ppos uint64 // bit in out, byte in the puff stream
	for i, d := range deflates {
		pe := puffs[i]
		n := rawBytes(pos, d.Offset)
		if pe.Offset != ppos+n || pe.Length > size || pe.Offset > size-pe.Length {
			return fmt.Errorf("%w: puff extent %+v (expected at %d)", ErrCorrupt, pe, ppos+n)
		}
		if err := readRaw(br, out, pos, d.Offset, n); err != nil {
			return err
		}
		h.r.left = int(pe.Length)
		if err := h.deflate(d); err != nil {
			return fmt.Errorf("puff at %d: %w", pe.Offset, err)
		}
		pos, ppos = d.Offset+d.Length, pe.Offset+pe.Length
	}
	rest := size - ppos
	if rest > 0 && rest > rawBytes(pos/8*8, uint64(len(out))*8) {
		return fmt.Errorf("%w: puff stream makes more than %d bytes", ErrCorrupt, len(out))
	}
	end := pos
	if rest > 0 {
		end = pos/8*8 + rest*8
	}
	return readRaw(br, out, pos, end, rest)
}

// deflate writes the deflate d from the puff in h.r.
func (h *huffer) deflate(d BitExtent) error {
	h.w.pos, h.w.end = d.Offset, d.Offset+d.Length
	for h.r.left > 0 {
		if err := h.block(); err != nil {
			return err
		}
	}
	if h.w.pos != h.w.end {
		return fmt.Errorf("%w: puff makes %d of %d deflate bits", ErrCorrupt, h.w.pos-d.Offset, d.Length)
	}
	return nil
}

// readRaw reads the n puff stream bytes that carry out's bits [a, b)
// (see appendRaw) and puts them in place: all but the first straight
// into out, the last masked.
func readRaw(r io.Reader, out []byte, a, b, n uint64) error {
	if n == 0 {
		return nil
	}
	var first [1]byte
	if _, err := io.ReadFull(r, first[:]); err != nil {
		return fmt.Errorf("puff stream: %w", err)
	}
	k := min(b-a, 8-a&7)
	out[a/8] |= (first[0] & (byte(1)<<k - 1)) << (a & 7)
	if n == 1 {
		return nil
	}
	rest := out[a/8+1 : a/8+n]
	if _, err := io.ReadFull(r, rest); err != nil {
		return fmt.Errorf("puff stream: %w", err)
	}
	if b&7 != 0 {
		rest[len(rest)-1] &= byte(1)<<(b&7) - 1
	}
	return nil
}
