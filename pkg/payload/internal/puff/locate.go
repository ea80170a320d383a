package puff

import (
	"bytes"
	"encoding/binary"
)

// Locate finds the deflate streams of gzip members, of zip entries
// (method 8) and of PNG IDAT chunks (zlib) in data, in order, and returns
// their bit extents; limit bounds
// each stream's puff (larger ones are left out, as are streams that
// do not parse or that puffin's format cannot carry).
func Locate(data []byte, limit int) []BitExtent {
	var out []BitExtent
	p := &puffer{r: bitReader{b: data}, w: puffWriter{limit: limit}}
	for i := 0; i+4 <= len(data); {
		start, ok := streamStart(data, i)
		if !ok {
			i++
			continue
		}
		if end, err := p.streamEnd(uint64(start) * 8); err == nil {
			out = append(out, BitExtent{uint64(start) * 8, end - uint64(start)*8})
			i = int((end + 7) / 8)
			continue
		}
		i++
	}
	return out
}

// streamStart says whether a gzip member or a zip entry with method 8
// starts at data[i:], and where its deflate stream starts.
func streamStart(data []byte, i int) (int, bool) {
	switch {
	case bytes.HasPrefix(data[i:], []byte{0x1F, 0x8B, 8}):
		return gzipStart(data, i)
	case bytes.HasPrefix(data[i:], []byte("PK\x03\x04")) && i+30 <= len(data):
		h := data[i:]
		if binary.LittleEndian.Uint16(h[8:]) != 8 {
			return 0, false
		}
		s := i + 30 + int(binary.LittleEndian.Uint16(h[26:])) + int(binary.LittleEndian.Uint16(h[28:]))
		return s, s < len(data)
	case bytes.HasPrefix(data[i:], []byte("IDAT")) && i >= 4 && i+6 < len(data):
		// A zlib stream (RFC 1950) without a preset dictionary. Its
		// deflate stream runs on into the next IDAT chunk when the image
		// has several; such a stream fails to parse here, or parses as
		// other bits: either way it is puffed bit-exactly or not at all.
		cmf, flg := data[i+4], data[i+5]
		return i + 6, cmf&0x0F == 8 && cmf>>4 <= 7 && flg&0x20 == 0 && (uint(cmf)<<8|uint(flg))%31 == 0
	}
	return 0, false
}

// gzipStart parses a gzip member's header (RFC 1952) at data[i:].
func gzipStart(data []byte, i int) (int, bool) {
	if i+10 > len(data) {
		return 0, false
	}
	flg := data[i+3]
	if flg&0xE0 != 0 {
		return 0, false
	}
	j := i + 10
	if flg&4 != 0 {
		if j+2 > len(data) {
			return 0, false
		}
		j += 2 + int(binary.LittleEndian.Uint16(data[j:]))
	}
	for _, bit := range []byte{8, 16} {
		if flg&bit != 0 {
			k := bytes.IndexByte(data[min(j, len(data)):], 0)
			if k < 0 {
				return 0, false
			}
			j += k + 1
		}
	}
	if flg&2 != 0 {
		j += 2
	}
	return j, j < len(data)
}

// streamEnd parses the deflate stream at bit start, up to its final
// block, and returns the bit after it.
func (p *puffer) streamEnd(start uint64) (uint64, error) {
	p.r.pos, p.r.end = start, uint64(len(p.r.b))*8
	p.w.out = p.w.out[:0]
	defer func(limit int) { p.w.limit = limit }(p.w.limit)
	for {
		if err := p.block(); err != nil {
			return 0, err
		}
		if err := p.w.flush(); err != nil {
			return 0, err
		}
		if p.final {
			return p.r.pos, nil
		}
		if len(p.w.out) > 1<<20 {
			p.w.out = p.w.out[:0] // only the size matters here, not the puff
			p.w.limit -= 1 << 20
		}
	}
}
