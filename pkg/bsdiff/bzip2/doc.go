// Package bzip2 is a bzip2 encoder; the standard library's compress/bzip2
// only decodes. Its output is a single bzip2 stream that compress/bzip2,
// bunzip2 and bspatch read:
//
//	stream   "BZh" + level ('1'-'9'), blocks, end marker
//	block    48-bit magic 0x314159265359, 32-bit block CRC, 1 bit
//	         randomised (always 0), 24-bit origPtr, symbol map (16 + 16*k
//	         bits), 3-bit table count (2-6), 15-bit selector count, selectors
//	         (move-to-front, unary), per table a 5-bit start length and
//	         delta-coded code lengths, then Huffman-coded symbols, a table
//	         change every 50 symbols
//	end      48-bit magic 0x177245385090, 32-bit combined CRC, zero bits to
//	         a byte boundary
//
// Bits are written most significant first. The pipeline per block is: run-
// length encoding of 4-255 equal bytes (RLE1), Burrows-Wheeler transform
// (rotations sorted through a suffix array of the doubled block),
// move-to-front, zero-run coding (RUNA/RUNB), Huffman with 2-6 tables
// refined over four passes. CRCs are CRC-32 (poly 0x04c11db7), MSB first,
// of the uncompressed bytes; the combined CRC is rotl1(combined) ^ block.
//
// Memory: about 10 bytes per byte of block (9 MB at level 9).
package bzip2
