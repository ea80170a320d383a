package bzip2

import (
	"errors"
	"fmt"
	"io"
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("bzip2: write after close")

// Writer compresses what is written to it into one bzip2 stream. It is
// not safe for concurrent use.
type Writer struct {
	bw       bitWriter
	level    int
	maxBlock int // bytes of RLE1 output per block

	block    []byte // RLE1 output of the current block
	blockCRC uint32 // unfinalised CRC of the block's input bytes
	combined uint32
	runByte  byte
	runLen   int
	started  bool // stream header written
	closed   bool
	enc      encoder
}

// NewWriter returns a Writer at level 9 (900 kB blocks), as bzip2 -9 and
// bsdiff use.
func NewWriter(w io.Writer) *Writer {
	z, _ := NewWriterLevel(w, 9)
	return z
}

// NewWriterLevel returns a Writer with blocks of level*100 kB, level 1-9.
func NewWriterLevel(w io.Writer, level int) (*Writer, error) {
	if level < 1 || level > 9 {
		return nil, fmt.Errorf("bzip2: level %d not in 1-9", level)
	}
	// bzip2 keeps 19 bytes of slack below the decoder's block limit.
	return &Writer{bw: bitWriter{w: w}, level: level, maxBlock: level*100000 - 19, blockCRC: ^uint32(0)}, nil
}

// Write compresses p. Errors from the underlying writer are sticky.
func (z *Writer) Write(p []byte) (int, error) {
	if z.closed {
		return 0, ErrClosed
	}
	for _, c := range p {
		if z.runLen > 0 && c == z.runByte && z.runLen < 255 {
			z.runLen++
			continue
		}
		if z.runLen > 0 {
			z.flushRun()
		}
		z.runByte, z.runLen = c, 1
	}
	return len(p), z.bw.err
}

// flushRun appends the pending run to the block, starting a new block
// first if it might not fit.
func (z *Writer) flushRun() {
	if len(z.block)+5 > z.maxBlock {
		z.writeBlock()
	}
	c, n := z.runByte, z.runLen
	z.blockCRC = updateCRC(z.blockCRC, c, n)
	if n < 4 {
		for i := 0; i < n; i++ {
			z.block = append(z.block, c)
		}
	} else {
		z.block = append(z.block, c, c, c, c, byte(n-4))
	}
	z.runLen = 0
}

func (z *Writer) header() {
	if !z.started {
		z.started = true
		z.bw.write(24, 'B'<<16|'Z'<<8|'h')
		z.bw.write(8, uint32('0'+z.level))
	}
}

func (z *Writer) writeBlock() {
	if len(z.block) == 0 {
		return
	}
	z.header()
	crc := ^z.blockCRC
	z.combined = (z.combined<<1 | z.combined>>31) ^ crc
	z.enc.encode(&z.bw, z.block, crc)
	z.block = z.block[:0]
	z.blockCRC = ^uint32(0)
}

// Close flushes the last block and writes the end of the stream. It does
// not close the underlying writer.
func (z *Writer) Close() error {
	if z.closed {
		return z.bw.err
	}
	z.closed = true
	if z.runLen > 0 {
		z.flushRun()
	}
	z.writeBlock()
	z.header()
	z.bw.write48(0x177245385090)
	z.bw.write(32, z.combined)
	z.bw.pad()
	return z.bw.err
}
