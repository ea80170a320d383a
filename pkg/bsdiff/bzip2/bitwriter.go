package bzip2

import "io"

// bitWriter writes bits most significant first, with a sticky error.
type bitWriter struct {
	w     io.Writer
	acc   uint64
	nbits uint
	buf   []byte
	err   error
}

func (b *bitWriter) write(n uint, v uint32) {
	b.acc = b.acc<<n | uint64(v)&(1<<n-1)
	b.nbits += n
	for b.nbits >= 8 {
		b.nbits -= 8
		b.buf = append(b.buf, byte(b.acc>>b.nbits))
	}
	if len(b.buf) >= 64<<10 {
		b.flush()
	}
}

func (b *bitWriter) write48(v uint64) {
	b.write(24, uint32(v>>24))
	b.write(24, uint32(v))
}

func (b *bitWriter) flush() {
	if b.err == nil && len(b.buf) > 0 {
		_, b.err = b.w.Write(b.buf)
	}
	b.buf = b.buf[:0]
}

// pad writes zero bits to a byte boundary and flushes.
func (b *bitWriter) pad() {
	if b.nbits > 0 {
		b.write(8-b.nbits, 0)
	}
	b.flush()
}
