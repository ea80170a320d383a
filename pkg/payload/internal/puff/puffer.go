package puff

import "fmt"

const (
	maxLitRun   = 1<<16 + 127 // longest literal run of one header
	maxMetadata = 1 + 3 + 286 + 30 + 19
	eobLength   = 259 // the end of block's length in a puff stream
)

// puffWriter appends puff items to out; literals wait in lits.
type puffWriter struct {
	out   []byte
	lits  []byte
	limit int
}

func (w *puffWriter) literal(c byte) error {
	w.lits = append(w.lits, c)
	if len(w.lits) == maxLitRun {
		return w.flush()
	}
	return nil
}

func (w *puffWriter) flush() error {
	switch n := len(w.lits); {
	case n == 0:
		return nil
	case n <= 127:
		w.out = append(w.out, byte(n-1))
	default:
		w.out = append(w.out, 0x7F, byte((n-128)>>8), byte(n-128))
	}
	w.out = append(w.out, w.lits...)
	w.lits = w.lits[:0]
	return w.check()
}

func (w *puffWriter) lenDist(l, d int) error {
	if err := w.flush(); err != nil {
		return err
	}
	if l < 130 {
		w.out = append(w.out, 0x80|byte(l-3))
	} else {
		w.out = append(w.out, 0xFF, byte(l-130))
	}
	w.out = append(w.out, byte(d>>8), byte(d))
	return w.check()
}

func (w *puffWriter) check() error {
	if len(w.out) > w.limit {
		return ErrTooLarge
	}
	return nil
}

func (w *puffWriter) endOfBlock() error {
	if err := w.flush(); err != nil {
		return err
	}
	w.out = append(w.out, 0xFF, eobLength-130)
	return w.check()
}

func (w *puffWriter) metadata(m []byte) error {
	if err := w.flush(); err != nil {
		return err
	}
	w.out = append(w.out, byte((len(m)-1)>>8), byte(len(m)-1))
	w.out = append(w.out, m...)
	return nil
}

// puffer parses deflate blocks into a puff stream.
type puffer struct {
	r         bitReader
	w         puffWriter
	lit, dist code
	cl        code
	meta      []byte
	lens      []uint8
	final     bool // the last block read was the stream's last
}

// block puffs the deflate block at r.pos.
func (p *puffer) block() error {
	hdr, err := p.r.bits(3)
	if err != nil {
		return err
	}
	final, typ := byte(hdr&1), byte(hdr>>1)
	p.final = final == 1
	p.meta = append(p.meta[:0], final<<7|typ<<5)
	switch typ {
	case 0:
		return p.stored()
	case 1:
		if err := p.w.metadata(p.meta); err != nil {
			return err
		}
		return p.codes(fixedLit, fixedDist)
	case 2:
		if err := p.dynamic(); err != nil {
			return err
		}
		if err := p.w.metadata(p.meta); err != nil {
			return err
		}
		return p.codes(&p.lit, &p.dist)
	}
	return fmt.Errorf("%w: block type 3", ErrCorrupt)
}

// stored puffs a stored block: its padding bits go into the metadata.
func (p *puffer) stored() error {
	pad := uint(-p.r.pos & 7)
	skipped, err := p.r.bits(pad)
	if err != nil {
		return err
	}
	if skipped > 31 {
		return fmt.Errorf("%w: stored block padding %#x", ErrUnpuffable, skipped)
	}
	p.meta[0] |= byte(skipped)
	ln, err := p.r.bits(16)
	if err != nil {
		return err
	}
	nln, err := p.r.bits(16)
	if err != nil {
		return err
	}
	if ln^nln != 0xFFFF {
		return fmt.Errorf("%w: stored block length %#x/%#x", ErrCorrupt, ln, nln)
	}
	if err := p.w.metadata(p.meta); err != nil {
		return err
	}
	start := p.r.pos >> 3
	if (p.r.end-p.r.pos)>>3 < uint64(ln) {
		return errShort
	}
	for _, c := range p.r.b[start : start+uint64(ln)] {
		if err := p.w.literal(c); err != nil {
			return err
		}
	}
	p.r.pos += uint64(ln) * 8
	return p.w.endOfBlock()
}

// codes puffs a Huffman block's symbols up to its end of block.
func (p *puffer) codes(lit, dist *code) error {
	for {
		sym, err := lit.decode(&p.r)
		switch {
		case err != nil:
			return err
		case sym < 256:
			if err := p.w.literal(byte(sym)); err != nil {
				return err
			}
			continue
		case sym == 256:
			return p.w.endOfBlock()
		case sym > 285:
			return fmt.Errorf("%w: length symbol %d", ErrCorrupt, sym)
		}
		l, d, err := p.lenDist(sym-257, dist)
		if err != nil {
			return err
		}
		if err := p.w.lenDist(l, d); err != nil {
			return err
		}
	}
}

// lenDist reads a length's extra bits and its distance.
func (p *puffer) lenDist(li int, dist *code) (int, int, error) {
	x, err := p.r.bits(uint(lengthExtra[li]))
	if err != nil {
		return 0, 0, err
	}
	l := int(lengthBase[li]) + int(x)
	if li == 27 && x == 31 {
		return 0, 0, fmt.Errorf("%w: length 258 as code 284", ErrUnpuffable)
	}
	ds, err := dist.decode(&p.r)
	if err != nil {
		return 0, 0, err
	}
	if ds > 29 {
		return 0, 0, fmt.Errorf("%w: distance symbol %d", ErrCorrupt, ds)
	}
	x, err = p.r.bits(uint(distExtra[ds]))
	if err != nil {
		return 0, 0, err
	}
	return l, int(distBase[ds]) + int(x), nil
}

// dynamic reads a dynamic block's code lengths into p.meta and builds its
// codes.
func (p *puffer) dynamic() error {
	h, err := p.r.bits(14)
	if err != nil {
		return err
	}
	nlit, ndist, ncl := int(h&31)+257, int(h>>5&31)+1, int(h>>10)+4
	if nlit > 286 || ndist > 30 {
		return fmt.Errorf("%w: %d literal/length and %d distance codes", ErrCorrupt, nlit, ndist)
	}
	p.meta = append(p.meta, byte(h&31), byte(h>>5&31), byte(h>>10))
	var cl [19]uint8
	for i := range ncl {
		v, err := p.r.bits(3)
		if err != nil {
			return err
		}
		cl[clOrder[i]] = uint8(v)
		if i%2 == 0 {
			p.meta = append(p.meta, byte(v)<<4)
		} else {
			p.meta[len(p.meta)-1] |= byte(v)
		}
	}
	if err := p.cl.build(cl[:]); err != nil {
		return err
	}
	if err := p.lengths(nlit, &p.lit); err != nil {
		return err
	}
	return p.lengths(ndist, &p.dist)
}

// lengths reads n code lengths (one part: a repeat may not cross it) and
// builds c from them.
func (p *puffer) lengths(n int, c *code) error {
	p.lens = p.lens[:0]
	for len(p.lens) < n {
		sym, err := p.cl.decode(&p.r)
		if err != nil {
			return err
		}
		if sym < 16 {
			p.lens = append(p.lens, uint8(sym))
			p.meta = append(p.meta, byte(sym))
			continue
		}
		extra, base, pb := [3]uint{2, 3, 7}[sym-16], [3]int{3, 3, 11}[sym-16], [3]byte{16, 20, 28}[sym-16]
		x, err := p.r.bits(extra)
		if err != nil {
			return err
		}
		val := uint8(0)
		if sym == 16 {
			if len(p.lens) == 0 {
				return fmt.Errorf("%w: code length repeat at the start of a part", ErrUnpuffable)
			}
			val = p.lens[len(p.lens)-1]
		}
		k := base + int(x)
		if len(p.lens)+k > n {
			return fmt.Errorf("%w: code length repeat crosses into the distance codes", ErrUnpuffable)
		}
		for range k {
			p.lens = append(p.lens, val)
		}
		p.meta = append(p.meta, pb+byte(x))
	}
	return c.build(p.lens)
}
