package puff

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

const magic = "PUF1"

// StreamInfo describes one side of a patch: its deflates and their puff
// extents, and the size of its puff stream.
type StreamInfo struct {
	Deflates   []BitExtent
	Puffs      []ByteExtent
	PuffLength uint64
}

// Patch is a decoded puffin patch; Bsdiff aliases the encoded patch.
type Patch struct {
	Src, Dst StreamInfo
	Bsdiff   []byte
}

// Field numbers of puffin's PatchHeader, StreamInfo and BitExtent.
const (
	fVersion, fSrc, fDst, fType = 1, 2, 3, 4
	fDeflates, fPuffs, fPuffLen = 1, 2, 3
	fOffset, fLength            = 1, 2
)

// Encode returns the patch: magic, header size, header, bsdiff patch.
func (p *Patch) Encode() []byte {
	var h []byte
	h = protowire.AppendTag(h, fVersion, protowire.VarintType)
	h = protowire.AppendVarint(h, 1)
	h = protowire.AppendTag(h, fSrc, protowire.BytesType)
	h = protowire.AppendBytes(h, p.Src.encode())
	h = protowire.AppendTag(h, fDst, protowire.BytesType)
	h = protowire.AppendBytes(h, p.Dst.encode())
	out := make([]byte, 0, 8+len(h)+len(p.Bsdiff))
	out = append(out, magic...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(h)))
	out = append(out, h...)
	return append(out, p.Bsdiff...)
}

func (s *StreamInfo) encode() []byte {
	var b []byte
	for _, d := range s.Deflates {
		b = protowire.AppendTag(b, fDeflates, protowire.BytesType)
		b = protowire.AppendBytes(b, encodeExtent(d.Offset, d.Length))
	}
	for _, p := range s.Puffs {
		b = protowire.AppendTag(b, fPuffs, protowire.BytesType)
		b = protowire.AppendBytes(b, encodeExtent(p.Offset*8, p.Length*8))
	}
	if s.PuffLength != 0 {
		b = protowire.AppendTag(b, fPuffLen, protowire.VarintType)
		b = protowire.AppendVarint(b, s.PuffLength)
	}
	return b
}

func encodeExtent(off, n uint64) []byte {
	var b []byte
	if off != 0 {
		b = protowire.AppendTag(b, fOffset, protowire.VarintType)
		b = protowire.AppendVarint(b, off)
	}
	if n != 0 {
		b = protowire.AppendTag(b, fLength, protowire.VarintType)
		b = protowire.AppendVarint(b, n)
	}
	return b
}

// Decode parses a puffin patch (bsdiff type only).
func Decode(b []byte) (*Patch, error) {
	if len(b) < 8 || string(b[:4]) != magic {
		return nil, fmt.Errorf("%w: no %s magic", ErrCorrupt, magic)
	}
	n := binary.BigEndian.Uint32(b[4:])
	if uint64(n) > uint64(len(b)-8) {
		return nil, fmt.Errorf("%w: header of %d bytes in a %d byte patch", ErrCorrupt, n, len(b))
	}
	p := &Patch{Bsdiff: b[8+n:]}
	err := fields(b[8:8+n], func(num protowire.Number, v uint64, m []byte) error {
		switch num {
		case fSrc:
			return p.Src.decode(m)
		case fDst:
			return p.Dst.decode(m)
		case fType:
			if v != 0 {
				return fmt.Errorf("%w: patch type %d (only bsdiff)", ErrCorrupt, v)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (s *StreamInfo) decode(b []byte) error {
	return fields(b, func(num protowire.Number, v uint64, m []byte) error {
		switch num {
		case fDeflates, fPuffs:
			var off, n uint64
			err := fields(m, func(num protowire.Number, v uint64, _ []byte) error {
				if num == fOffset {
					off = v
				} else if num == fLength {
					n = v
				}
				return nil
			})
			if err != nil {
				return err
			}
			if num == fDeflates {
				s.Deflates = append(s.Deflates, BitExtent{off, n})
			} else if off%8 != 0 || n%8 != 0 {
				return fmt.Errorf("%w: puff extent not in whole bytes", ErrCorrupt)
			} else {
				s.Puffs = append(s.Puffs, ByteExtent{off / 8, n / 8})
			}
		case fPuffLen:
			s.PuffLength = v
		}
		return nil
	})
}

// fields calls f with each field of the protobuf message b: its number
// and its varint or length-delimited value; other wire types are skipped.
func fields(b []byte, f func(protowire.Number, uint64, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: patch header: %v", ErrCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
		var v uint64
		var m []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			m, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: patch header: %v", ErrCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
		if err := f(num, v, m); err != nil {
			return err
		}
	}
	return nil
}
