package puff

import (
	"bufio"
	"fmt"
	"io"
)

// puffReader reads the puff items of one deflate, left bytes, from r; a
// literal run or a block's metadata is read into scratch.
type puffReader struct {
	r       *bufio.Reader
	left    int
	scratch []byte
}

var errPuffShort = fmt.Errorf("%w: puff ends early", ErrCorrupt)

func (r *puffReader) byte() (byte, error) {
	if r.left == 0 {
		return 0, errPuffShort
	}
	r.left--
	c, err := r.r.ReadByte()
	if err != nil {
		return 0, fmt.Errorf("puff stream: %w", err)
	}
	return c, nil
}

func (r *puffReader) u16() (int, error) {
	hi, err := r.byte()
	if err != nil {
		return 0, err
	}
	lo, err := r.byte()
	return int(hi)<<8 | int(lo), err
}

// take reads n (at most maxLitRun) bytes; they stay valid until the next
// take.
func (r *puffReader) take(n int) ([]byte, error) {
	if n > r.left {
		return nil, errPuffShort
	}
	if r.scratch == nil {
		r.scratch = make([]byte, maxLitRun)
	}
	r.left -= n
	b := r.scratch[:n]
	if _, err := io.ReadFull(r.r, b); err != nil {
		return nil, fmt.Errorf("puff stream: %w", err)
	}
	return b, nil
}

// item kinds of a Huffman block's body.
const (
	itemLiterals = iota
	itemLenDist
	itemEnd
)

// next reads a literal run (its bytes in lits), a length/distance pair or
// the end of block.
func (r *puffReader) next() (kind int, lits []byte, l, d int, err error) {
	h, err := r.byte()
	if err != nil {
		return 0, nil, 0, 0, err
	}
	if h&0x80 == 0 {
		n := int(h) + 1
		if h == 0x7F {
			if n, err = r.u16(); err != nil {
				return 0, nil, 0, 0, err
			}
			n += 128
		}
		lits, err = r.take(n)
		return itemLiterals, lits, 0, 0, err
	}
	l = int(h&0x7F) + 3
	if h == 0xFF {
		b, err := r.byte()
		if err != nil {
			return 0, nil, 0, 0, err
		}
		l = int(b) + 130
	}
	switch {
	case l == eobLength:
		return itemEnd, nil, 0, 0, nil
	case l > 258:
		return 0, nil, 0, 0, fmt.Errorf("%w: puff length %d", ErrCorrupt, l)
	}
	d, err = r.u16()
	if err == nil && (d == 0 || d > 32768) {
		err = fmt.Errorf("%w: puff distance %d", ErrCorrupt, d)
	}
	return itemLenDist, nil, l, d, err
}

// huffer writes deflate blocks from a puff stream.
type huffer struct {
	r         puffReader
	w         bitWriter
	lit, dist code
	cl        code
	lens      []uint8
}

// block writes the block whose puff starts at r.pos.
func (h *huffer) block() error {
	n, err := h.r.u16()
	if err != nil {
		return err
	}
	if n+1 > maxMetadata {
		return fmt.Errorf("%w: block metadata of %d bytes", ErrCorrupt, n+1)
	}
	meta, err := h.r.take(n + 1)
	if err != nil {
		return err
	}
	typ := meta[0] >> 5 & 3
	if err := h.w.bits(uint32(meta[0]>>7)|uint32(typ)<<1, 3); err != nil {
		return err
	}
	switch {
	case typ == 0 && len(meta) == 1:
		return h.stored(uint32(meta[0] & 31))
	case typ == 1 && len(meta) == 1:
		return h.codes(fixedLit, fixedDist)
	case typ == 2:
		if err := h.dynamic(meta[1:]); err != nil {
			return err
		}
		return h.codes(&h.lit, &h.dist)
	}
	return fmt.Errorf("%w: block metadata %x", ErrCorrupt, meta)
}

func (h *huffer) stored(skipped uint32) error {
	pad := uint(-h.w.pos & 7)
	if skipped >= 1<<pad {
		return fmt.Errorf("%w: stored block padding %#x in %d bits", ErrCorrupt, skipped, pad)
	}
	if err := h.w.bits(skipped, pad); err != nil {
		return err
	}
	kind, lits, _, _, err := h.r.next()
	if err != nil {
		return err
	}
	if kind == itemLiterals {
		if len(lits) > 0xFFFF {
			return fmt.Errorf("%w: stored block of %d bytes", ErrCorrupt, len(lits))
		}
		if kind, _, _, _, err = h.r.next(); err != nil {
			return err
		}
	}
	if kind != itemEnd {
		return fmt.Errorf("%w: stored block does not end", ErrCorrupt)
	}
	n := uint32(len(lits))
	if err := h.w.bits(n|(n^0xFFFF)<<16, 32); err != nil {
		return err
	}
	if (h.w.end-h.w.pos)>>3 < uint64(n) {
		return errOverrun
	}
	copy(h.w.b[h.w.pos>>3:], lits)
	h.w.pos += uint64(n) * 8
	return nil
}

// codes writes a Huffman block's symbols up to its end of block.
func (h *huffer) codes(lit, dist *code) error {
	for {
		kind, lits, l, d, err := h.r.next()
		if err != nil {
			return err
		}
		switch kind {
		case itemEnd:
			return lit.encode(&h.w, 256)
		case itemLiterals:
			for _, c := range lits {
				if err := lit.encode(&h.w, int(c)); err != nil {
					return err
				}
			}
			continue
		}
		ls, lx := lengthSym(l)
		ds, dx := distSym(d)
		if err := lit.encode(&h.w, ls); err != nil {
			return err
		}
		if err := h.w.bits(lx, uint(lengthExtra[ls-257])); err != nil {
			return err
		}
		if err := dist.encode(&h.w, ds); err != nil {
			return err
		}
		if err := h.w.bits(dx, uint(distExtra[ds])); err != nil {
			return err
		}
	}
}

// dynamic writes a dynamic block's header from its metadata m (past the
// first byte) and builds its codes.
func (h *huffer) dynamic(m []byte) error {
	if len(m) < 3 || m[0] > 29 || m[1] > 29 || m[2] > 15 {
		return fmt.Errorf("%w: dynamic block header", ErrCorrupt)
	}
	nlit, ndist, ncl := int(m[0])+257, int(m[1])+1, int(m[2])+4
	if err := h.w.bits(uint32(m[0])|uint32(m[1])<<5|uint32(m[2])<<10, 14); err != nil {
		return err
	}
	m = m[3:]
	if len(m) < (ncl+1)/2 {
		return fmt.Errorf("%w: dynamic block header", ErrCorrupt)
	}
	var cl [19]uint8
	for i := range ncl {
		v := m[i/2] >> 4
		if i%2 == 1 {
			v = m[i/2] & 15
		}
		cl[clOrder[i]] = v & 7
		if err := h.w.bits(uint32(v), 3); err != nil || v > 7 {
			return fmt.Errorf("%w: code length code length %d", ErrCorrupt, v)
		}
	}
	m = m[(ncl+1)/2:]
	if err := h.cl.build(cl[:]); err != nil {
		return err
	}
	m, err := h.lengths(m, nlit, &h.lit)
	if err != nil {
		return err
	}
	if m, err = h.lengths(m, ndist, &h.dist); err != nil {
		return err
	}
	if len(m) != 0 {
		return fmt.Errorf("%w: %d extra metadata bytes", ErrCorrupt, len(m))
	}
	return nil
}

// lengths writes n code lengths from m and builds c; it returns the rest
// of m.
func (h *huffer) lengths(m []byte, n int, c *code) ([]byte, error) {
	h.lens = h.lens[:0]
	for len(h.lens) < n {
		if len(m) == 0 {
			return nil, fmt.Errorf("%w: code lengths end early", ErrCorrupt)
		}
		v := m[0]
		m = m[1:]
		sym, x, extra, k, val := int(v), uint32(0), uint(0), 1, v
		switch {
		case v < 16:
		case v < 20:
			if len(h.lens) == 0 {
				return nil, fmt.Errorf("%w: code length repeat at the start", ErrCorrupt)
			}
			sym, x, extra, k, val = 16, uint32(v-16), 2, int(v-16)+3, h.lens[len(h.lens)-1]
		case v < 28:
			sym, x, extra, k, val = 17, uint32(v-20), 3, int(v-20)+3, 0
		case v < 156:
			sym, x, extra, k, val = 18, uint32(v-28), 7, int(v-28)+11, 0
		default:
			return nil, fmt.Errorf("%w: code length symbol %d", ErrCorrupt, v)
		}
		if len(h.lens)+k > n {
			return nil, fmt.Errorf("%w: code length repeat past the part", ErrCorrupt)
		}
		if err := h.cl.encode(&h.w, sym); err != nil {
			return nil, err
		}
		if err := h.w.bits(x, extra); err != nil {
			return nil, err
		}
		for range k {
			h.lens = append(h.lens, val)
		}
	}
	return m, c.build(h.lens)
}
