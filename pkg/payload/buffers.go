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
// which made an apply reallocate its buffers after every collection).
//
// What the pool holds (buffers in use and free) stays within limit, set
// to the run's budget: a request that would go past it takes a free buffer
// of any larger class or, when there is none, drops free buffers of other
// classes to the collector. Without a limit, a delta's phases added up:
// nine free 2 MiB bsdiff outputs stayed while the 8 MiB new-data
// operations that followed allocated theirs (41 MiB held under a 22 MiB
// budget, 66 MiB peak RSS).
type bufPool struct {
	mu    sync.Mutex
	free  [poolClasses][][]byte
	held  int // bytes of the pool's buffers, in use or free
	limit int // 0: none
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
		return alignedBuf(n, n)
	}
	if b := bp.take(k, c); b != nil {
		return b[:n]
	}
	return alignedBuf(n, c)
}

// alignedBuf allocates a 4096-aligned buffer of length n and capacity c.
func alignedBuf(n, c int) []byte {
	raw := make([]byte, c+align)
	off := int(uintptr(unsafe.Pointer(&raw[0])) & (align - 1))
	if off != 0 {
		off = align - off
	}
	return raw[off : off+n : off+c]
}

// take removes and returns a free buffer of class k or, if none, of class
// k+1; at the limit, of any larger class. Nil: the caller allocates a
// buffer of c bytes, which take has counted, after dropping free buffers
// to make room within the limit.
func (bp *bufPool) take(k, c int) []byte {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	top := k
	if k > 0 { // a 1 MiB request (an operation's small data) never pins more
		top = min(k+1, poolClasses-1)
	}
	atLimit := bp.limit > 0 && bp.held+c > bp.limit
	if atLimit {
		top = poolClasses - 1
	}
	for i := k; i <= top; i++ {
		if l := bp.free[i]; len(l) > 0 {
			bp.free[i] = l[:len(l)-1]
			return l[len(l)-1]
		}
	}
	for i := poolClasses - 1; atLimit && i >= 0 && bp.held+c > bp.limit; i-- {
		for _, b := range bp.free[i] {
			bp.held -= cap(b)
		}
		clear(bp.free[i])
		bp.free[i] = bp.free[i][:0]
	}
	bp.held += c
	return nil
}

// allow sets the limit to what the pool holds now and n bytes more.
func (bp *bufPool) allow(n int64) {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	bp.limit = bp.held + int(n)
}

func (bp *bufPool) limitBytes() int64 {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	return int64(bp.limit)
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
