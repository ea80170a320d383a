package bsdiff

import "errors"

// Sentinel errors. Every one maps to update_engine code 28
// (DownloadOperationExecutionError) when it fails an install operation.
var (
	// ErrMagic: the patch starts with neither "BSDIFF40" nor "BSDF2".
	ErrMagic = errors.New("bsdiff: unknown patch magic")
	// ErrHeader: a header length is negative or larger than the patch.
	ErrHeader = errors.New("bsdiff: corrupt patch header")
	// ErrCompressor: a BSDF2 stream names a compressor other than 0, 1, 2.
	ErrCompressor = errors.New("bsdiff: unsupported compressor")
	// ErrCorrupt: a stream does not decompress, ends early, or a ctrl
	// triple is negative or overruns new_size.
	ErrCorrupt = errors.New("bsdiff: corrupt patch")
	// ErrOldRange: the patch reads or seeks outside the old data.
	ErrOldRange = errors.New("bsdiff: patch reads outside the old data")
	// ErrTooLarge: Diff input is longer than MaxDiffInput.
	ErrTooLarge = errors.New("bsdiff: input too large to diff")
	// ErrFormat: Options.Format names no format this package writes.
	ErrFormat = errors.New("bsdiff: unknown output format")
)
