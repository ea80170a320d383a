// Package payload reads, writes, signs, verifies and applies CrAU update
// payloads, the format of ChromeOS/Android update_engine, which CoreOS and
// Flatcar also use.
//
// # Byte layout (integers big-endian)
//
// Major version 1 (CoreOS, Flatcar; metadata_size = 20 + manifest_size):
//
//	0   4  magic "CrAU"
//	4   8  major version = 1
//	12  8  manifest_size
//	20  .. manifest: protobuf FlatcarManifest
//	..  .. data blobs, op data_offset relative to the first blob byte
//	..  .. payload Signatures blob at blob offset signatures_offset,
//	       signatures_size bytes, no length prefix
//
// Major version 2 (Android/ChromeOS; metadata_size = 24 + manifest_size):
//
//	0   4  magic "CrAU"
//	4   8  major version = 2
//	12  8  manifest_size
//	20  4  metadata_signature_size (u32)
//	24  .. manifest: protobuf DeltaArchiveManifest
//	..  .. metadata Signatures blob, metadata_signature_size bytes, signs
//	       the bytes [0, metadata_size)
//	..  .. data blobs, then the payload Signatures blob as in version 1
//
// # Signatures
//
// RSASSA-PKCS1-v1_5 over SHA-256. Version 1 signs the SHA-256 of
// [0, metadata_size + signatures_offset). Version 2 signs the SHA-256 of the
// same bytes less the metadata signature. A Signatures blob may hold several
// signatures (key rotation): a payload verifies when any signature verifies
// with any configured key. Version 1 writers also add one noop REPLACE
// operation into a hole (start_block 2^64-1) covering the signature blob.
//
// # Versions
//
// The generator writes the new image's version into the manifest, where
// the signatures cover it: major 2 in PartitionUpdate.version (AOSP field
// 17), major 1 in new_image_info.version (field 11 of the manifest, which
// Flatcar's manifest does not define and its readers skip).
// Options.Version makes the applier refuse, before the first write, a
// payload offered under another version (ErrVersionMismatch);
// Options.RequireVersion refuses one that carries none (ErrVersionMissing).
//
// # Applying
//
// [Apply] streams a payload from an io.Reader onto an io.WriterAt target,
// never holding it whole: the metadata (and its v2 signature) is verified and
// every operation validated before the first write, each operation's data
// hash is checked before its write, operations are decoded on all cores and
// written in order, and the payload signature and new partition hash are
// verified at the end. [Resume] continues from a [Checkpoint].
//
// Operation types: REPLACE, REPLACE_BZ, REPLACE_XZ, ZERO, DISCARD,
// SOURCE_COPY, SOURCE_BSDIFF (a BSDIFF40 or BSDF2 patch), BROTLI_BSDIFF
// (BSDF2, brotli streams), PUFFDIFF (a puffin patch: bsdiff between puff
// streams, where deflate streams are kept as puffs; sources and puff
// streams of at most 64 MiB), and the project extension REPLACE_ZSTD (type
// 0x5a5a, a zstd frame), which readers told to be strict refuse.
//
// # Files
//
// A major 1 payload's install procedures (Flatcar: the kernel and the TPM
// PCR policy, after the USR partition's data) are files, not partitions:
// with Options.Files they are written to the files it opens, cut to
// new_info.size and checked against new_info.hash after the signature
// (ErrNewKernelHash, ErrNewPCRPolicyHash). Checkpoints stop before the
// first file operation, so a resumed apply writes the files from their
// start. GenerateOptions.Procedures writes them.
//
// # Generating
//
// [Generate] writes a full payload in operations of at most 2 MiB, each the
// smallest of REPLACE and the chosen compression (REPLACE_XZ by default,
// REPLACE_BZ for version 1, REPLACE_ZSTD on request). Full payloads are
// minor version 0 and use the REPLACE family only, as the reference
// generator does and AOSP's paycheck requires; only the zstd extension
// also uses ZERO. Output is deterministic.
//
// # Deltas
//
// Source operations read the old partition only through Options.Source
// (the active slot). Their src extents, concatenated (holes read as
// zeros), must hash to src_sha256_hash before the operation runs; before
// the first write, the source's first old_partition_info.size bytes must
// hash to old_partition_info.hash. Otherwise the error is
// ErrSourceMismatch and nothing is written. [GenerateDelta] writes deltas
// (see deltagen.go for how it finds sources).
//
// Errors are sentinels of this package; each documents the update_engine
// error code (SPEC section 7) the engine maps it to.
package payload
