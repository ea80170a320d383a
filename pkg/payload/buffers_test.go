package payload

import (
	"testing"
	"unsafe"
)

// TestBufPoolClasses: a buffer goes back to its size class only, so a
// large request never gets a small buffer (nor a small one a large
// buffer), and a returned buffer is reused by its class.
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
	bp.put(make([]byte, 3<<20)) // not a class size: dropped
	for k, l := range bp.free {
		for _, b := range l {
			if cap(b) != poolMin<<k {
				t.Fatalf("class %d holds a buffer of cap %d", k, cap(b))
			}
		}
	}
}
