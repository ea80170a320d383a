package payload

import (
	"context"
	"sync"
	"unsafe"
)

// align is the O_DIRECT alignment of offsets, lengths and buffers.
const align = 4096

// bufPool recycles 4096-aligned buffers. Buffers are allocated with their
// capacity rounded up to 1 MiB so that the usual 2 MiB operations reuse them.
type bufPool struct {
	p sync.Pool // of *[]byte, each 4096-aligned
}

func (bp *bufPool) get(n int) []byte {
	if v := bp.p.Get(); v != nil {
		b := *v.(*[]byte)
		if cap(b) >= n {
			return b[:n]
		}
	}
	c := (n + (1<<20 - 1)) &^ (1<<20 - 1)
	if c == 0 {
		c = 1 << 20
	}
	raw := make([]byte, c+align)
	off := int(uintptr(unsafe.Pointer(&raw[0])) & (align - 1))
	if off != 0 {
		off = align - off
	}
	return raw[off : off+n : off+c]
}

func (bp *bufPool) put(b []byte) {
	if cap(b) == 0 {
		return
	}
	b = b[:0]
	bp.p.Put(&b)
}

// budget bounds the bytes of operation data in flight, in 1 MiB tokens.
// Only the reader acquires; the writer releases.
type budget chan struct{}

const budgetUnit = 1 << 20

func newBudget(bytes int64) budget { return make(budget, max(1, bytes/budgetUnit)) }

// acquire takes tokens for n bytes (at most the whole budget) and returns
// how many it took.
func (b budget) acquire(ctx context.Context, n int64) (int, error) {
	k := int(min(int64(cap(b)), max(1, (n+budgetUnit-1)/budgetUnit)))
	for i := 0; i < k; i++ {
		select {
		case b <- struct{}{}:
		case <-ctx.Done():
			b.release(i)
			return 0, ctx.Err()
		}
	}
	return k, nil
}

func (b budget) release(k int) {
	for ; k > 0; k-- {
		<-b
	}
}
