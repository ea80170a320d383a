package payload

import (
	"context"
	"sync"
	"unsafe"
)

// align is the O_DIRECT alignment of offsets, lengths and buffers.
const align = 4096

// bufPool recycles 4096-aligned buffers, in one free list per size class
// (capacities 1 MiB << k). A request takes a free buffer of its class or,
// when there is none, of the class above: data of varying sizes (a zstd
// operation's: 3 to 9 MiB) then reuses the buffers it already has instead
// of adding one per class, each of which would stay. No further up, so a
// small request never pins a much larger buffer.
// The lists are not emptied by the garbage collector (as a sync.Pool is,
// which made an apply reallocate its buffers after every collection), so
// an apply allocates no more buffers than it ever has in flight, which
// the budget bounds.
type bufPool struct {
	mu   sync.Mutex
	free [poolClasses][][]byte
}

const (
	poolMin     = 1 << 20
	poolClasses = 8 // 1 MiB … 128 MiB (> MaxOpBytes)
)

// poolClass is the class of a request of n bytes: the smallest whose
// capacity holds n.
func poolClass(n int) int {
	k := 0
	for k < poolClasses-1 && poolMin<<k < n {
		k++
	}
	return k
}

func (bp *bufPool) get(n int) []byte {
	k := poolClass(n)
	c := poolMin << k
	if n > c { // larger than any class: not pooled
		c = n
	} else if b := bp.take(k); b != nil {
		return b[:n]
	}
	raw := make([]byte, c+align)
	off := int(uintptr(unsafe.Pointer(&raw[0])) & (align - 1))
	if off != 0 {
		off = align - off
	}
	return raw[off : off+n : off+c]
}

// take removes and returns a free buffer of class k or, if none, of class
// k+1 (nil: none).
func (bp *bufPool) take(k int) []byte {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	top := k
	if k > 0 { // a 1 MiB request (an operation's small data) never pins more
		top = min(k+1, poolClasses-1)
	}
	for ; k <= top; k++ {
		if l := bp.free[k]; len(l) > 0 {
			bp.free[k] = l[:len(l)-1]
			return l[len(l)-1]
		}
	}
	return nil
}

func (bp *bufPool) put(b []byte) {
	k := poolClass(cap(b))
	if cap(b) != poolMin<<k {
		return // not one of ours
	}
	bp.mu.Lock()
	defer bp.mu.Unlock()
	bp.free[k] = append(bp.free[k], b[:0])
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
