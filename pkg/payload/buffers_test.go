package payload

import (
	"testing"
	"unsafe"

	"github.com/abupdate/update_engine/pkg/payload/metadata"
	"google.golang.org/protobuf/proto"
)

// TestBufPoolClasses: a buffer goes back to its size class only, so a
// large request never gets a small buffer, nor a small one a buffer more
// than one class larger; a returned buffer is reused by its class, and by
// the class below when that has none.
func TestBufPoolClasses(t *testing.T) {
	var bp bufPool
	small := bp.get(3 << 20)
	if len(small) != 3<<20 || cap(small) != 4<<20 {
		t.Fatalf("3 MiB request: len %d cap %d, want 3 MiB in a 4 MiB buffer", len(small), cap(small))
	}
	if uintptr(unsafe.Pointer(&small[0]))%align != 0 {
		t.Fatal("buffer not aligned")
	}
	bp.put(small)
	big := bp.get(16 << 20)
	if cap(big) != 16<<20 || &big[0] == &small[0] {
		t.Fatalf("16 MiB request got cap %d (the small buffer: %v)", cap(big), &big[0] == &small[0])
	}
	bp.put(big)
	again := bp.get(4 << 20)
	if &again[0] != &small[0] || len(again) != 4<<20 {
		t.Fatalf("4 MiB request did not reuse the 4 MiB buffer")
	}
	tiny := bp.get(100)
	if cap(tiny) != poolMin || &tiny[0] == &big[0] {
		t.Fatalf("100-byte request: cap %d", cap(tiny))
	}
	bp.put(again)
	if half := bp.get(3 << 19); &half[0] != &small[0] || len(half) != 3<<19 {
		t.Fatal("1.5 MiB request with no 2 MiB buffer free did not take the free 4 MiB one")
	}
	bp.put(make([]byte, 3<<20)) // not a class size: dropped
	for k, l := range bp.free {
		for _, b := range l {
			if cap(b) != poolMin<<k {
				t.Fatalf("class %d holds a buffer of cap %d", k, cap(b))
			}
		}
	}
}

// TestDefaultBudget: 16 MiB, or two of the largest operations' data and
// output, at most 48 MiB; with zstd operations of more than 8 MiB, at
// least their stream's reserve (the largest output's window and the
// pieces) and 12 MiB of data, and such an operation's output counts
// there, not in its own need.
func TestDefaultBudget(t *testing.T) {
	op := func(typ metadata.InstallOperation_Type) func(dst, data uint64) step {
		return func(dst, data uint64) step {
			return step{op: &metadata.InstallOperation{Type: typ.Enum(), DataLength: proto.Uint64(data)},
				kind: opKinds[typ], write: true, file: -1, dstBytes: dst}
		}
	}
	xzOp, zstdOp := op(OpReplaceXZ), op(OpReplaceZstd)
	const pieces = streamPieces * streamPiece
	const room = 2 * (128<<10 + 64)
	for _, tc := range []struct {
		steps []step
		want  int64
	}{
		{[]step{xzOp(2<<20, 1<<20)}, 16 << 20},
		{[]step{xzOp(2<<20, 1<<20), xzOp(16<<20, 3<<20+1)}, 2 * (16 + 4) << 20},
		{[]step{xzOp(64<<20, 20<<20)}, 48 << 20},
		{[]step{zstdOp(8<<20, 1<<20)}, 18 << 20}, // not streamed: data and output
		{[]step{zstdOp(9<<20, 1<<20)}, 9<<20 + room + pieces + 12<<20},
		{[]step{zstdOp(24<<20, 7<<20), zstdOp(24<<20, 9<<20)}, 24<<20 + room + pieces + 12<<20},
		{[]step{zstdOp(64<<20, 20<<20)}, 32<<20 + room + pieces + 12<<20},
		{[]step{zstdOp(8<<20, 2<<20), xzOp(24<<20, 20<<20)}, 48 << 20},
	} {
		p := &plan{steps: tc.steps}
		if got := p.defaultBudget(); got != tc.want {
			t.Errorf("budget %d MiB, want %d MiB", got>>20, tc.want>>20)
		}
	}
}

// TestBufPoolLimit: with a limit, the pool holds no more than it: a
// request past it takes a free buffer of any larger class, or drops the
// free ones of other classes before allocating.
func TestBufPoolLimit(t *testing.T) {
	var bp bufPool
	bp.allow(4 << 20)
	a, b := bp.get(2<<20), bp.get(2<<20)
	bp.put(a)
	bp.put(b)
	big := bp.get(8 << 20) // past the limit, nothing larger free: drop both
	if n := len(bp.free[1]); n != 0 || bp.held != 8<<20 {
		t.Fatalf("after an 8 MiB request: %d free 2 MiB buffers, %d MiB held; want 0 and 8", n, bp.held>>20)
	}
	bp.put(big)
	small := bp.get(1 << 20) // at the limit: the free 8 MiB buffer, not a new one
	if &small[0] != &big[0] || len(small) != 1<<20 || bp.held != 8<<20 {
		t.Fatalf("1 MiB request at the limit: same buffer %v, len %d, %d MiB held", &small[0] == &big[0], len(small), bp.held>>20)
	}
	bp.put(small)

	var free bufPool // no limit: classes keep their buffers
	x := free.get(2 << 20)
	free.put(x)
	free.get(8 << 20)
	if len(free.free[1]) != 1 {
		t.Fatal("without a limit the free 2 MiB buffer was dropped")
	}
}

// TestMemoryLimit: Options.MemoryLimit gets the pool's limit (what it
// held when the budget was set, and the budget), a streamed plan's
// window, and the process's room, once, before the first operation.
func TestMemoryLimit(t *testing.T) {
	zstdOp := func(dst, data uint64) step {
		return step{op: &metadata.InstallOperation{Type: OpReplaceZstd.Enum(), DataLength: proto.Uint64(data)},
			kind: opKinds[OpReplaceZstd], write: true, file: -1, dstBytes: dst}
	}
	for _, tc := range []struct {
		steps []step
		want  int64
	}{
		{[]step{zstdOp(8<<20, 1<<20)}, 1<<20 + 18<<20 + processRoom},
		{[]step{zstdOp(24<<20, 7<<20)}, 1<<20 + streamPieces*streamPiece + 12<<20 + streamReserve(24<<20) - streamPieces*streamPiece + processRoom},
	} {
		a := &applier{p: &plan{steps: tc.steps}, o: &Options{}}
		a.zeros = a.pool.get(1 << 20)
		if _, err := a.startBudget(); err != nil {
			t.Fatal(err)
		}
		if got := a.memoryLimit(); got != tc.want {
			t.Errorf("limit %.2f MiB, want %.2f MiB", float64(got)/(1<<20), float64(tc.want)/(1<<20))
		}
		a.zs.close()
	}
}

// TestDecoderRoom: a patch operation's decoder room counts in what it
// takes from the budget, not in the default budget: two of them do not
// run at once in a 16 MiB budget, and the budget does not grow for them.
func TestDecoderRoom(t *testing.T) {
	for _, typ := range []metadata.InstallOperation_Type{OpPuffdiff, OpBrotliBsdiff, OpSourceBsdiff} {
		s := step{op: &metadata.InstallOperation{Type: typ.Enum(), DataLength: proto.Uint64(1 << 20)},
			kind: opKinds[typ], write: true, file: -1, dstBytes: 2 << 20}
		if got, want := s.memNeed(), 3<<20+opKinds[typ].room; got != want || opKinds[typ].room < patchRoom {
			t.Errorf("%v: memNeed %d MiB, want %d (room %d MiB)", typ, got>>20, want>>20, opKinds[typ].room>>20)
		}
		p := &plan{steps: []step{s, s}}
		if b := p.defaultBudget(); b != minAutoBudget || 2*s.memNeed() <= b {
			t.Errorf("%v: default budget %d MiB; want %d, less than two such ops (%d)", typ, b>>20, minAutoBudget>>20, 2*s.memNeed()>>20)
		}
	}
}
