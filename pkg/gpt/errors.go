package gpt

import "errors"

// Sentinel errors. Each says which update_engine error code (SPEC.md
// section 7) the engine reports for it; pkg/gpt itself knows no codes.
var (
	// ErrNoValidGPT: neither GPT copy is valid; the wrapped text names what is
	// wrong with each. Engine code 7 (InstallDeviceOpenError).
	ErrNoValidGPT = errors.New("gpt: no valid GPT")
	// ErrCorrupt: one structure (header, entry array, protective MBR) is
	// damaged; found in Report fields and wrapped by ErrNoValidGPT texts.
	// Engine code 7 (InstallDeviceOpenError).
	ErrCorrupt = errors.New("gpt: corrupt")
	// ErrNotFound: no partition matches a lookup. Engine code 7.
	ErrNotFound = errors.New("gpt: partition not found")
	// ErrNoBootable: no entry of the type is bootable (priority > 0 and
	// tries > 0 or successful). Engine code 1 (Error).
	ErrNoBootable = errors.New("gpt: no bootable partition")
	// ErrInvalid: a bad argument or a table that cannot be written as asked
	// (overlaps, out of range, name too long). Engine code 1 (Error).
	ErrInvalid = errors.New("gpt: invalid argument")
	// ErrIO: reading or writing the disk failed. Engine code 14
	// (DownloadWriteError) when writing, 7 when opening or reading.
	ErrIO = errors.New("gpt: I/O error")
)
