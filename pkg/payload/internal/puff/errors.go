package puff

import "errors"

var (
	// ErrCorrupt: a deflate stream, puff stream or patch is malformed.
	ErrCorrupt = errors.New("puff: corrupt data")
	// ErrUnpuffable: a valid deflate stream that puffin's format cannot
	// carry bit-exactly (a stored block's padding bits over 31, a code
	// length repeat crossing into the distance lengths, length 258 coded
	// as 284 plus 31).
	ErrUnpuffable = errors.New("puff: deflate stream not representable")
	// ErrTooLarge: a puff stream would exceed the caller's limit.
	ErrTooLarge = errors.New("puff: puff stream too large")

	errCorrupt = ErrCorrupt
	errShort   = errors.Join(ErrCorrupt, errors.New("puff: data ends inside a deflate block"))
	errOverrun = errors.Join(ErrCorrupt, errors.New("puff: deflate bits overrun their extent"))
)
