package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/abupdate/update_engine/pkg/payload/metadata"
	"github.com/klauspost/compress/zstd"
)

func zstdFrame(t *testing.T, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// streamAll runs streamZstd with pieces of size piece and returns the
// pieces' offsets and their bytes, concatenated.
func streamAll(t *testing.T, data []byte, n uint64, piece int) ([]uint64, []byte, error) {
	t.Helper()
	dec, err := newZstdDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	var froms []uint64
	var got []byte
	get := func() ([]byte, error) { return make([]byte, piece), nil }
	emit := func(b []byte, from uint64) error {
		froms = append(froms, from)
		got = append(got, b...)
		return nil
	}
	err = streamZstd(dec, data, n, get, emit)
	return froms, got, err
}

// TestStreamZstd: the output comes in order, in pieces of the size asked
// (the last one cut at the output's end), zero-padded to the output; a
// frame that decodes to more than the output, or that is cut short, is
// an error, not a truncated or padded output.
func TestStreamZstd(t *testing.T) {
	const mib = 1 << 20
	src := testImage(5*mib+4096, 7)
	frame := zstdFrame(t, src)
	n := uint64(len(src) + 3*4096)
	froms, got, err := streamAll(t, frame, n, mib)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{0, mib, 2 * mib, 3 * mib, 4 * mib, 5 * mib}; fmt.Sprint(froms) != fmt.Sprint(want) {
		t.Fatalf("pieces at %v, want %v", froms, want)
	}
	if uint64(len(got)) != n || !bytes.Equal(got[:len(src)], src) || !isZero(got[len(src):]) {
		t.Fatal("output differs from the frame's content, zero-padded")
	}

	if _, _, err := streamAll(t, frame, uint64(len(src)-4096), mib); !errors.Is(err, errZstdTooLong) {
		t.Fatalf("output shorter than the frame: %v, want %v", err, errZstdTooLong)
	}
	if _, _, err := streamAll(t, frame[:len(frame)-9], n, mib); err == nil {
		t.Fatal("a frame cut short decoded without an error")
	}
	// Two frames in one operation are one output, as for DecodeAll.
	two := append(zstdFrame(t, src[:mib]), zstdFrame(t, src[mib:])...)
	if _, got, err := streamAll(t, two, n, 3*mib); err != nil || !bytes.Equal(got[:len(src)], src) {
		t.Fatalf("two frames: %v", err)
	}
}

// TestWritePieces plays the worker of a streamed operation with two
// destination extents: the writer writes each piece as it comes (before
// the decode ends), cut at the extent boundary, hands it to finish, which
// hashes it and gives it back to the stream, and ends the job after the
// worker is done.
func TestWritePieces(t *testing.T) {
	const mib = 1 << 20
	out := testImage(5*mib, 22)
	op := &metadata.InstallOperation{Type: OpReplaceZstd.Enum(),
		DstExtents: append(ext(0, 384), ext(384, 896)...)} // 1.5 MiB + 3.5 MiB
	s := &step{op: op, kind: opKinds[OpReplaceZstd], write: true, file: -1, dstBytes: 5 * mib}
	zs := &zstdStream{free: make(chan []byte, streamPieces)}
	a := &applier{p: &plan{bs: 4096, newInfo: info(out)}, o: &Options{}, phash: sha256.New(), pstream: true, zs: zs}
	j := &job{s: s, done: make(chan struct{}), pieces: make(chan piece, streamPieces)}
	target, fin, errc, expect := runWriter(t, a, j)
	j.pieces <- piece{b: out[:2*mib], from: 0}
	expect([2]int64{0, 1.5 * mib}, [2]int64{1.5 * mib, 2 * mib})
	j.pieces <- piece{b: out[2*mib:], from: 2 * mib}
	expect([2]int64{2 * mib, 5 * mib})
	close(j.pieces)
	close(j.done)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(target.mem.b, out) {
		t.Fatal("target differs from the output")
	}
	close(fin)
	if err := a.finishJobs(context.Background(), target, fin, newBudget(1)); err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(out); !a.pstream || a.phashed != 5*mib || !bytes.Equal(a.phash.Sum(nil), sum[:]) {
		t.Fatalf("partition hash: streaming %v, %d bytes hashed", a.pstream, a.phashed)
	}
	if len(zs.free) != 2 {
		t.Fatalf("%d pieces back in the stream, want 2", len(zs.free))
	}
}

// TestZstdApplyOrder applies a payload of many streamed REPLACE_ZSTD
// operations with several workers and budgets: the run's one stream
// decoder takes them in order (under -race, two at once would be a race).
// An operation with corrupt data among them fails the apply with the hash
// error, which hands its turn on (the apply would hang otherwise).
func TestZstdApplyOrder(t *testing.T) {
	defer func(was uint64) { streamAbove = was }(streamAbove)
	streamAbove = 32 << 10 // the 64 KiB operations below are streamed
	k := keys(t, 1)
	img := testImage(3<<20, 23)
	p := generate(t, img, GenerateOptions{Keys: k[:1], Compression: CompressZstd, ChunkSize: 64 << 10})
	for _, o := range []Options{{Workers: 2}, {Workers: 4, MemoryBudget: 1}, {Workers: 1}} {
		o.Keys = pubs(k[0])
		var target memTarget
		if _, err := Apply(context.Background(), bytes.NewReader(p), &target, o); err != nil {
			t.Fatalf("workers %d, budget %d: %v", o.Workers, o.MemoryBudget, err)
		}
		if !bytes.Equal(target.b[:len(img)], img) {
			t.Fatalf("workers %d, budget %d: target differs", o.Workers, o.MemoryBudget)
		}
	}
	m, err := ReadMetadata(bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	var zops []*metadata.InstallOperation
	for _, op := range m.Partitions[0].Ops {
		if op.GetType() == OpReplaceZstd {
			zops = append(zops, op)
		}
	}
	if len(zops) < 8 {
		t.Fatalf("%d REPLACE_ZSTD operations, want many", len(zops))
	}
	bad := bytes.Clone(p)
	bad[m.DataStart()+zops[len(zops)/2].GetDataOffset()+3] ^= 0x40
	var target memTarget
	_, err = Apply(context.Background(), bytes.NewReader(bad), &target, Options{Keys: pubs(k[0]), Workers: 2})
	if !errors.Is(err, ErrOperationHashMismatch) {
		t.Fatalf("corrupt operation: %v, want %v", err, ErrOperationHashMismatch)
	}
}
