package payload

import "errors"

// Sentinel errors. Each names the update_engine error code the engine reports
// for it. Errors returned by this package wrap one of them with %w and say
// where the input broke.
var (
	// ErrBadMagic: the payload does not start with "CrAU". Code 21
	// (DownloadInvalidMetadataMagicString).
	ErrBadMagic = errors.New("payload: bad magic")
	// ErrUnsupportedVersion: a major version other than 1 or 2. Code 23
	// (DownloadManifestParseError).
	ErrUnsupportedVersion = errors.New("payload: unsupported major version")
	// ErrMetadataSize: the manifest or metadata signature size is absurd.
	// Code 32 (DownloadInvalidMetadataSize).
	ErrMetadataSize = errors.New("payload: invalid metadata size")
	// ErrManifestParse: the manifest is not a valid protobuf. Code 23
	// (DownloadManifestParseError).
	ErrManifestParse = errors.New("payload: cannot parse manifest")
	// ErrInvalidManifest: the manifest parses but describes something
	// impossible (extents out of the partition or overlapping, data offsets
	// not sequential, sizes that do not add up). Code 23.
	ErrInvalidManifest = errors.New("payload: invalid manifest")
	// ErrUnknownOperation: an operation type this reader does not apply, or
	// a project extension refused in strict mode. Code 23.
	ErrUnknownOperation = errors.New("payload: unknown or unsupported operation type")
	// ErrMetadataSignatureMissing: keys are configured but a version 2
	// payload has no metadata signature. Code 39
	// (DownloadMetadataSignatureMissingError).
	ErrMetadataSignatureMissing = errors.New("payload: metadata signature missing")
	// ErrMetadataSignatureInvalid: the metadata signature blob cannot be
	// parsed. Code 33 (DownloadInvalidMetadataSignature).
	ErrMetadataSignatureInvalid = errors.New("payload: invalid metadata signature blob")
	// ErrMetadataSignatureMismatch: no metadata signature verifies with any
	// configured key. Code 26 (DownloadMetadataSignatureMismatch).
	ErrMetadataSignatureMismatch = errors.New("payload: metadata signature mismatch")
	// ErrSignatureMissing: keys are configured but the payload carries no
	// signature. Code 22 (DownloadSignatureMissingInManifest).
	ErrSignatureMissing = errors.New("payload: signature missing")
	// ErrSignatureInvalid: the payload signature blob cannot be parsed. Code
	// 12 (DownloadPayloadVerificationError).
	ErrSignatureInvalid = errors.New("payload: invalid signature blob")
	// ErrSignatureMismatch: no payload signature verifies with any
	// configured key. Code 18 (DownloadPayloadPubKeyVerificationError).
	ErrSignatureMismatch = errors.New("payload: signature mismatch")
	// ErrOperationHashMissing: an operation with data has no data hash.
	// Code 38 (DownloadOperationHashMissingError).
	ErrOperationHashMissing = errors.New("payload: operation data hash missing")
	// ErrOperationHashMismatch: an operation's data (or, for delta
	// operations, its source blocks) does not match its hash. Code 29
	// (DownloadOperationHashMismatch).
	ErrOperationHashMismatch = errors.New("payload: operation data hash mismatch")
	// ErrOperationExecution: an operation failed to decode or write. Code 28
	// (DownloadOperationExecutionError).
	ErrOperationExecution = errors.New("payload: operation execution failed")
	// ErrNewPartitionHash: the written partition does not match
	// new_partition_info. Code 15 (NewRootfsVerificationError).
	ErrNewPartitionHash = errors.New("payload: new partition hash mismatch")
	// ErrTruncated: the payload ended before its declared end, or carries
	// bytes after it. Code 11 (PayloadSizeMismatchError).
	ErrTruncated = errors.New("payload: size mismatch (truncated or trailing data)")
	// ErrBadCheckpoint: a checkpoint does not match the payload metadata.
	// Code 20 (DownloadStateInitializationError); the engine starts clean.
	ErrBadCheckpoint = errors.New("payload: bad checkpoint")
	// ErrNoSource: a delta operation needs a source and none was given.
	// Code 28.
	ErrNoSource = errors.New("payload: delta operation without source")
	// ErrVersionMismatch: the version inside the payload's (signed)
	// manifest is not the one the update server offered (Options.Version):
	// a server presenting an older image as a newer one. Code 12
	// (DownloadPayloadVerificationError).
	ErrVersionMismatch = errors.New("payload: version in the payload differs from the offered version")
	// ErrVersionMissing: Options.RequireVersion is set and the payload
	// carries no version. Code 12.
	ErrVersionMissing = errors.New("payload: payload carries no version")
)

// ErrWrite: writing the target failed. Code 14 (DownloadWriteError).
var ErrWrite = errors.New("payload: write to target failed")

// ErrPayloadHash: the whole payload's SHA-256 differs from the expected one
// (Omaha's). Code 10 (PayloadHashMismatchError).
var ErrPayloadHash = errors.New("payload: payload hash mismatch")
