// Package bsdiff reads and writes bsdiff binary patches in the two formats
// update_engine payloads carry (SOURCE_BSDIFF, BROTLI_BSDIFF; the legacy
// BSDIFF op):
//
//	BSDIFF40 (Colin Percival's bsdiff 4.x, Debian's bsdiff/bspatch)
//	  off len
//	  0   8   "BSDIFF40"
//	  8   8   ctrl_len   compressed length of the ctrl stream
//	  16  8   diff_len   compressed length of the diff stream
//	  24  8   new_size   length of the new data
//	  32  ..  ctrl (bzip2), diff (bzip2), extra (bzip2, to end of patch)
//
//	BSDF2 (AOSP/ChromiumOS bsdiff)
//	  0   5   "BSDF2"
//	  5   1   ctrl compressor   0 none, 1 bzip2, 2 brotli
//	  6   1   diff compressor
//	  7   1   extra compressor
//	  8.. as BSDIFF40
//
// Every integer (header and ctrl) is 64 bits, little-endian,
// sign-magnitude: bit 63 is the sign, bits 0-62 the magnitude.
//
// The decompressed ctrl stream is a sequence of triples (diff_n, extra_n,
// seek). For each: diff_n bytes of new data are old[oldpos+i] +
// diff[i] (bytewise, mod 256), then extra_n bytes are copied from the extra
// stream, then oldpos += seek. Triples stop when new_size bytes are out.
//
// This package is stricter than bspatch in one respect: a diff run must
// read old bytes inside [0, old size) and oldpos must stay inside
// [0, old size] after each seek (bsdiff never writes anything else;
// bspatch would add zeros). A patch breaking that fails with ErrOldRange.
//
// Reading (NewReader, Apply) streams: memory is bounded by the
// decompressors (bzip2 about 3.6 MB per stream at level 9; brotli its
// declared window, at most 16 MiB per stream) plus a 32 KiB buffer,
// whatever new_size claims. Writing (Diff) holds old and new in memory; see
// Diff for the memory per input byte.
//
// All errors wrap one of the package's sentinels; update_engine reports
// each of them as code 28 (kActionCodeDownloadOperationExecutionError).
package bsdiff
