package puff

// bitReader reads data's bits [pos, end), least significant bit first.
type bitReader struct {
	b        []byte
	pos, end uint64
}

// peek returns the next n (<= 24) bits, zero past end.
func (r *bitReader) peek(n uint) uint32 {
	i := r.pos >> 3
	var v uint32
	for k := uint64(0); k < 4 && i+k < uint64(len(r.b)); k++ {
		v |= uint32(r.b[i+k]) << (8 * k)
	}
	v >>= r.pos & 7
	return v & (1<<n - 1)
}

// bits reads n (<= 24) bits.
func (r *bitReader) bits(n uint) (uint32, error) {
	if r.end-r.pos < uint64(n) {
		return 0, errShort
	}
	v := r.peek(n)
	r.pos += uint64(n)
	return v, nil
}

// bitWriter ORs bits into b's zeroed bits [pos, end).
type bitWriter struct {
	b        []byte
	pos, end uint64
}

func (w *bitWriter) bits(v uint32, n uint) error {
	if w.end-w.pos < uint64(n) {
		return errOverrun
	}
	for n > 0 {
		k := min(n, 8-uint(w.pos&7))
		w.b[w.pos>>3] |= byte(v&(1<<k-1)) << (w.pos & 7)
		v >>= k
		n -= k
		w.pos += uint64(k)
	}
	return nil
}
