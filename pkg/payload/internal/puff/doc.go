// Package puff turns deflate streams into puff streams and back, bit for
// bit, and reads and writes puffin patches (AOSP/ChromeOS PUFFDIFF). Its
// formats follow puffin's (facts from puffin's sources; no code of it):
//
// A puff stream is a file whose deflate bit extents are each replaced by
// their puff, a byte form that bsdiff and general compressors shorten far
// better than Huffman-coded bits. Per deflate block:
//
//   - block metadata: a big-endian uint16 (length-1), then length bytes:
//     byte 0 is BFINAL<<7 | BTYPE<<5 | the stored block's skipped padding
//     bits (5 bits; stored blocks only). A dynamic block adds HLIT, HDIST
//     and HCLEN (one byte each), the HCLEN+4 code length code lengths two
//     per byte (high nibble first, the last padded), then the literal/length
//     code lengths and then, apart, the distance code lengths, one byte per
//     symbol: 0-15 a length, 16+x code 16 (repeat 3+x), 20+x code 17
//     (3+x zeros), 28+x code 18 (11+x zeros). A repeat may not cross from
//     the literal/length lengths into the distance lengths.
//   - literals: a byte 0x00|(n-1) then n bytes (n <= 127), or 0x7F, a
//     big-endian uint16 n-128 and n bytes (n <= 65663). A stored block's
//     contents are one such run.
//   - a length/distance pair: 0x80|(length-3) for lengths under 130, else
//     0xFF and the byte length-130; then the distance, big-endian uint16.
//   - end of block: 0xFF 0x81 (length 259). A stored block ends with it too.
//
// Bytes between deflate extents are kept; a byte shared by a deflate and
// other bits keeps only the other bits, shifted down (bits after a deflate)
// or masked (bits before one); a byte shared by two adjacent deflates
// disappears (see Puff).
//
// A puffin patch is "PUF1", a big-endian uint32 header size, the
// PatchHeader protobuf (version 1, src and dst StreamInfo: deflate bit
// extents, puff extents in bits, puff length; type 0 = bsdiff), then a
// bsdiff patch (BSDF2, bzip2 or brotli streams) from the source's puff
// stream to the destination's.
package puff
