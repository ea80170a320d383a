package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/abupdate/update_engine/pkg/payload/metadata"
)

// writeLog records each WriteAt as [off, off+len) and announces it.
type writeLog struct {
	mem    memTarget
	writes chan [2]int64
}

// next is the next write; a writer that never writes fails the test
// after a minute instead of hanging it.
func (w *writeLog) next(t *testing.T) [2]int64 {
	t.Helper()
	select {
	case got := <-w.writes:
		return got
	case <-time.After(time.Minute):
		t.Fatal("no write")
		return [2]int64{}
	}
}

func (w *writeLog) WriteAt(b []byte, off int64) (int, error) {
	n, err := w.mem.WriteAt(b, off)
	w.writes <- [2]int64{off, off + int64(len(b))}
	return n, err
}

// TestProgressiveWrite plays a worker decoding one 6 MiB REPLACE_XZ
// operation with two destination extents, and checks what the writer
// does with its progress: it writes each final prefix once it is at least
// progressPiece past what it wrote (cut at the extent boundary), waits
// below that, writes the rest when the worker is done, and hands each
// part to finish, which hashes the partition in order.
func TestProgressiveWrite(t *testing.T) {
	const mib = 1 << 20
	out := testImage(6*mib, 21)
	op := &metadata.InstallOperation{Type: OpReplaceXZ.Enum(),
		DstExtents: append(ext(0, 384), ext(384, 1152)...)} // 1.5 MiB + 4.5 MiB
	s := &step{op: op, kind: opKinds[OpReplaceXZ], write: true, file: -1, dstBytes: 6 * mib}
	a := &applier{p: &plan{bs: 4096, newInfo: info(out)}, o: &Options{}, phash: sha256.New(), pstream: true}
	j := &job{s: s, out: out, done: make(chan struct{}), prog: newProgress()}
	target, fin, errc, expect := runWriter(t, a, j)
	j.prog.set(3*mib + 100) // a prefix of 3 MiB (rounded down to blocks)
	expect([2]int64{0, 1.5 * mib}, [2]int64{1.5 * mib, 3 * mib})
	j.prog.set(4 * mib) // 1 MiB more: not worth a write yet
	j.prog.set(5.5 * mib)
	expect([2]int64{3 * mib, 5.5 * mib})
	close(j.done)
	expect([2]int64{5.5 * mib, 6 * mib})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-target.writes:
		t.Fatalf("extra write [%d, %d)", w[0], w[1])
	default:
	}
	if !bytes.Equal(target.mem.b, out) {
		t.Fatal("target differs from the output")
	}
	close(fin)
	var parts [][3]uint64
	for wr := range fin {
		parts = append(parts, [3]uint64{wr.from, wr.to, map[bool]uint64{true: 1}[wr.last]})
		if err := a.finishJobs(context.Background(), target, chanOf(wr), newBudget(1)); err != nil {
			t.Fatal(err)
		}
	}
	if want := [][3]uint64{{0, 3 * mib, 0}, {3 * mib, 5.5 * mib, 0}, {5.5 * mib, 6 * mib, 1}}; fmt.Sprint(parts) != fmt.Sprint(want) {
		t.Fatalf("parts handed to finish %v, want %v", parts, want)
	}
	if sum := sha256.Sum256(out); !a.pstream || a.phashed != 6*mib || !bytes.Equal(a.phash.Sum(nil), sum[:]) {
		t.Fatalf("partition hash: streaming %v, %d bytes hashed", a.pstream, a.phashed)
	}
}

// TestProgressiveWriteFailedDecode: when the worker fails after part of
// the output was written, the writer returns its error and writes
// nothing more.
func TestProgressiveWriteFailedDecode(t *testing.T) {
	const mib = 1 << 20
	out := make([]byte, 4*mib)
	s := &step{op: &metadata.InstallOperation{Type: OpReplaceXZ.Enum(), DstExtents: ext(0, 1024)},
		kind: opKinds[OpReplaceXZ], write: true, file: -1, dstBytes: 4 * mib}
	a := &applier{p: &plan{bs: 4096}, o: &Options{}, phash: sha256.New(), pstream: true}
	j := &job{s: s, out: out, done: make(chan struct{}), prog: newProgress()}
	target, fin, errc, _ := runWriter(t, a, j)
	j.prog.set(2 * mib)
	if got := target.next(t); got != [2]int64{0, 2 * mib} {
		t.Fatalf("write %v, want [0, 2 MiB)", got)
	}
	j.err = ErrOperationExecution
	close(j.done)
	if err := <-errc; err != ErrOperationExecution {
		t.Fatalf("writeJob: %v, want the worker's error", err)
	}
	if len(target.writes) != 0 {
		t.Fatal("wrote after the failed decode")
	}
	if len(fin) != 1 || (<-fin).last {
		t.Fatal("finish got more than the written part, or the job's end")
	}
}

// runWriter runs a.writeJob for j in a goroutine and returns its target,
// what it hands to finish, its result, and a check of its next writes.
func runWriter(t *testing.T, a *applier, j *job) (*writeLog, chan written, chan error, func(...[2]int64)) {
	target := &writeLog{writes: make(chan [2]int64, 16)}
	fin := make(chan written, 16)
	errc := make(chan error, 1)
	go func() { errc <- a.writeJob(context.Background(), target, j, fin) }()
	expect := func(want ...[2]int64) {
		t.Helper()
		for _, w := range want {
			if got := target.next(t); got != w {
				t.Fatalf("write [%d, %d), want [%d, %d)", got[0], got[1], w[0], w[1])
			}
		}
	}
	return target, fin, errc, expect
}

// chanOf is a closed channel holding wr.
func chanOf(wr written) <-chan written {
	c := make(chan written, 1)
	c <- wr
	close(c)
	return c
}
