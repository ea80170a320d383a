package bsdiff

import "fmt"

// Format is a patch format and its stream compression.
type Format int

const (
	// BSDF2Brotli is BSDF2 with all three streams brotli-compressed: what
	// BROTLI_BSDIFF operations carry.
	BSDF2Brotli Format = iota
	// BSDF2BZ2 is BSDF2 with all three streams bzip2-compressed.
	BSDF2BZ2
	// BSDIFF40 is the classic format (bzip2 streams), read by Debian's
	// bspatch and valid in SOURCE_BSDIFF operations.
	BSDIFF40
	// BSDF2None is BSDF2 with uncompressed streams. This package reads
	// and writes it; AOSP's bspatch rejects it, so do not ship it.
	BSDF2None
)

func (f Format) String() string {
	switch f {
	case BSDF2Brotli:
		return "BSDF2/brotli"
	case BSDF2BZ2:
		return "BSDF2/bz2"
	case BSDIFF40:
		return "BSDIFF40"
	case BSDF2None:
		return "BSDF2/none"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Compressor bytes in a BSDF2 header.
const (
	compNone   = 0
	compBZ2    = 1
	compBrotli = 2
)

const headerLen = 32

// getInt decodes a 64-bit little-endian sign-magnitude integer. The
// negative zero decodes as 0; a magnitude of 2^63-1 is representable.
func getInt(b []byte) int64 {
	var u uint64
	for i := 7; i >= 0; i-- {
		u = u<<8 | uint64(b[i])
	}
	v := int64(u &^ (1 << 63))
	if u&(1<<63) != 0 {
		return -v
	}
	return v
}

// putInt encodes v as 64-bit little-endian sign-magnitude.
func putInt(b []byte, v int64) {
	u := uint64(v)
	if v < 0 {
		u = uint64(-v) | 1<<63
	}
	for i := 0; i < 8; i++ {
		b[i] = byte(u)
		u >>= 8
	}
}
