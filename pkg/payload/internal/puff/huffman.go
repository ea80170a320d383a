package puff

// Deflate's tables (RFC 1951 3.2.5).
var (
	lengthBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase    = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra   = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	// clOrder is the order of the code length code lengths.
	clOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

const maxCodeBits = 15

// code is a canonical Huffman code: per symbol its length and its code
// bit-reversed (deflate writes codes most significant bit first), and a
// decoding table indexed by the next maxLen bits.
type code struct {
	lens   []uint8
	rev    []uint16
	table  []uint32 // symbol<<4 | length; 0: no code
	maxLen uint
}

// build makes the code of lens; an over-subscribed set is refused, an
// incomplete one is kept (its unused bit patterns decode to errors).
func (c *code) build(lens []uint8) error {
	var count [maxCodeBits + 1]int
	c.maxLen = 0
	for _, l := range lens {
		if l > maxCodeBits {
			return errCorrupt
		}
		count[l]++
		c.maxLen = max(c.maxLen, uint(l))
	}
	left := 1
	var next [maxCodeBits + 2]int
	for l := 1; l <= maxCodeBits; l++ {
		left = left<<1 - count[l]
		if left < 0 {
			return errCorrupt
		}
		next[l+1] = (next[l] + count[l]) << 1
	}
	c.lens = append(c.lens[:0], lens...)
	c.rev = c.rev[:0]
	size := 1 << c.maxLen
	if cap(c.table) < size {
		c.table = make([]uint32, size)
	}
	c.table = c.table[:size]
	clear(c.table)
	for sym, l := range lens {
		r := uint16(0)
		if l > 0 {
			v := next[l]
			next[l]++
			for k := uint8(0); k < l; k++ {
				r = r<<1 | uint16(v>>k&1)
			}
			for i := int(r); i < size; i += 1 << l {
				c.table[i] = uint32(sym)<<4 | uint32(l)
			}
		}
		c.rev = append(c.rev, r)
	}
	return nil
}

// decode reads one symbol.
func (c *code) decode(r *bitReader) (int, error) {
	if c.maxLen == 0 {
		return 0, errCorrupt
	}
	e := c.table[r.peek(c.maxLen)]
	l := uint64(e & 15)
	if l == 0 {
		return 0, errCorrupt
	}
	if r.end-r.pos < l {
		return 0, errShort
	}
	r.pos += l
	return int(e >> 4), nil
}

// encode writes symbol sym.
func (c *code) encode(w *bitWriter, sym int) error {
	if sym >= len(c.lens) || c.lens[sym] == 0 {
		return errCorrupt
	}
	return w.bits(uint32(c.rev[sym]), uint(c.lens[sym]))
}

// fixedLit and fixedDist are the fixed block's codes (the literal/length
// symbols 286 and 287 and the distance symbols 30 and 31 have codes
// there, but no meaning: refused).
var fixedLit, fixedDist = func() (*code, *code) {
	lens := make([]uint8, 288)
	for i := range lens {
		switch {
		case i < 144:
			lens[i] = 8
		case i < 256:
			lens[i] = 9
		case i < 280:
			lens[i] = 7
		default:
			lens[i] = 8
		}
	}
	d := make([]uint8, 30)
	for i := range d {
		d[i] = 5
	}
	var lit, dist code
	if lit.build(lens) != nil || dist.build(d) != nil {
		panic("puff: fixed codes")
	}
	return &lit, &dist
}()

// lengthSym returns the length code and extra bits value of length l
// (3-258; 258 is code 285, never 284 with 31).
func lengthSym(l int) (int, uint32) {
	i := 28
	for int(lengthBase[i]) > l {
		i--
	}
	return 257 + i, uint32(l - int(lengthBase[i]))
}

// distSym returns the distance code and extra bits value of distance d.
func distSym(d int) (int, uint32) {
	i := 29
	for int(distBase[i]) > d {
		i--
	}
	return i, uint32(d - int(distBase[i]))
}
