package payload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// REPLACE_ZSTD operations of more than streamAbove bytes are decoded as
// streams, in pieces: a zstd decoder keeps its window's history itself,
// so the output never has to be whole in memory, and the writer writes
// (and finish hashes) each piece while the rest decodes. Decoding the
// whole output at once (klauspost's DecodeAll, which reports no progress)
// held a 24 MiB operation's output until it was complete: with one such
// operation in memory at a time, its write and hash followed its decode
// instead of overlapping it, and the apply ran at 0.57x the speed of
// 8 MiB operations. One run has one stream decoder, so its history is
// held once: the operations take it in payload order (job.turn). Smaller
// operations (the default 8 MiB) are decoded whole by runZstd, two at
// once on two cores: one stream decodes at one core's speed, which made
// 8 MiB operations' apply 8% slower.

// streamAbove is the output size above which a REPLACE_ZSTD operation is
// streamed; a test lowers it.
var streamAbove uint64 = 8 << 20

// Pieces of a streamed operation in flight: one decoding, one written,
// one hashed.
const (
	streamPieces = 3
	streamPiece  = 1 << 20
)

// zstdStream is a run's REPLACE_ZSTD decoder and its pieces.
type zstdStream struct {
	dec  *zstd.Decoder
	free chan []byte // pieces not in flight; finish puts them back
}

// piece is output bytes [from, from+len(b)) of a streamed operation.
type piece struct {
	b    []byte
	from uint64
}

// newZstdDecoder makes a decoder of REPLACE_ZSTD data, streamed or whole
// (runZstd): one goroutine (the caller's), windows up to maxZstdWindow.
func newZstdDecoder(more ...zstd.DOption) (*zstd.Decoder, error) {
	o := []zstd.DOption{zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxZstdWindow)}
	return zstd.NewReader(nil, append(o, more...)...)
}

func newZstdStream(pool *bufPool) (*zstdStream, error) {
	dec, err := newZstdDecoder()
	if err != nil {
		return nil, err
	}
	z := &zstdStream{dec: dec, free: make(chan []byte, streamPieces)}
	for range streamPieces {
		z.free <- pool.get(streamPiece)
	}
	return z, nil
}

func (z *zstdStream) close() {
	if z != nil {
		z.dec.Close()
	}
}

// streamReserve is the memory a run's zstd stream holds besides the
// operations' data, for operations of at most maxDst output bytes: the
// history of their windows with two blocks of room, and the pieces. Our
// generators write each operation as one single-segment frame (RFC 8878),
// whose window is its content size; other frames' windows of up to
// 8 MiB, accepted before 24 MiB operations existed, are counted too. A
// frame whose window is larger than both holds more, up to
// maxZstdWindow.
func streamReserve(maxDst uint64) int64 {
	const blockRoom = 2 * (128<<10 + 64)
	return int64(max(8<<20, min(maxDst, maxZstdWindow))) + blockRoom + streamPieces*streamPiece
}

// decode streams data, the verified blob of an operation of n output
// bytes, into pieces from z.free and hands them in order to out, which has
// room for all of them. The output is zero-padded to n.
func (z *zstdStream) decode(ctx context.Context, data []byte, n uint64, out chan<- piece) error {
	get := func() ([]byte, error) {
		select {
		case b := <-z.free:
			return b[:cap(b)], nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	emit := func(b []byte, from uint64) error {
		out <- piece{b: b, from: from} // out holds every piece: never blocks
		return nil
	}
	return streamZstd(z.dec, data, n, get, emit)
}

var errZstdTooLong = errors.New("decodes to more than the operation's output")

// streamZstd decodes data (zstd frames) with dec into exactly n bytes, the
// output zero-padded to n: each buffer from get is filled (the last one
// to n) and handed to emit with its output offset.
func streamZstd(dec *zstd.Decoder, data []byte, n uint64, get func() ([]byte, error), emit func(b []byte, from uint64) error) error {
	if err := dec.Reset(bytes.NewReader(data)); err != nil {
		return fmt.Errorf("REPLACE_ZSTD: %w", err)
	}
	ended := false
	for off := uint64(0); off < n; {
		b, err := get()
		if err != nil {
			return err
		}
		b = b[:min(uint64(len(b)), n-off)]
		k := 0
		if !ended {
			if k, ended, err = readSome(dec, b); err != nil {
				return fmt.Errorf("REPLACE_ZSTD: %w", err)
			}
		}
		clear(b[k:])
		if err := emit(b, off); err != nil {
			return err
		}
		off += uint64(len(b))
	}
	if !ended {
		var one [1]byte
		if k, _, err := readSome(dec, one[:]); err != nil {
			return fmt.Errorf("REPLACE_ZSTD: %w", err)
		} else if k > 0 {
			return fmt.Errorf("REPLACE_ZSTD %w (%d bytes)", errZstdTooLong, n)
		}
	}
	return nil
}

// readSome fills b from r until b is full or r ends (ended: io.EOF, the
// stream's clean end; a truncated frame is an error).
func readSome(r io.Reader, b []byte) (int, bool, error) {
	k := 0
	for k < len(b) {
		m, err := r.Read(b[k:])
		k += m
		if err == io.EOF {
			return k, true, nil
		}
		if err != nil {
			return k, false, err
		}
	}
	return k, false, nil
}

// decodeZstd decodes data into out whole (the generator's check of a zstd
// program's output), as an applier would.
func decodeZstd(data, out []byte) error {
	if uint64(len(out)) <= streamAbove {
		d := &decoder{}
		defer d.close()
		return runZstd(d, nil, data, out)
	}
	dec, err := newZstdDecoder()
	if err != nil {
		return err
	}
	defer dec.Close()
	var off int
	get := func() ([]byte, error) {
		b := out[off:min(len(out), off+streamPiece)]
		off += len(b)
		return b, nil
	}
	return streamZstd(dec, data, uint64(len(out)), get, func([]byte, uint64) error { return nil })
}
