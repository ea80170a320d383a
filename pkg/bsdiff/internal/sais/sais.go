// Package sais builds suffix arrays with the SA-IS algorithm (Nong, Zhang
// and Chan, "Linear Suffix Array Construction by Almost Pure Induced-
// Sorting", 2009) on int32 indices.
//
// Memory: the caller's sa (4 bytes per input byte) plus one type bit per
// input byte and, on recursion, at most half as much again; texts must be
// shorter than 2^31-1 bytes.
package sais

// MaxLen is the longest text Build accepts.
const MaxLen = 1<<31 - 2

// Build fills sa (len(sa) == len(text)) with the suffix array of text:
// sa[i] is the start of the i-th smallest suffix. It panics if the lengths
// differ or text is longer than MaxLen; callers check first.
func Build(text []byte, sa []int32) {
	if len(sa) != len(text) || len(text) > MaxLen {
		panic("sais: bad lengths")
	}
	build(text, sa, 256)
}

type symbol interface{ ~byte | ~int32 }

// bits is a bitset of suffix types: set = S-type.
type bits []uint64

func (b bits) get(i int) bool { return b[i>>6]&(1<<(uint(i)&63)) != 0 }
func (b bits) set(i int)      { b[i>>6] |= 1 << (uint(i) & 63) }

func build[T symbol](s []T, sa []int32, k int) {
	n := len(s)
	switch n {
	case 0:
		return
	case 1:
		sa[0] = 0
		return
	}
	// Classify suffixes. A virtual sentinel smaller than every symbol
	// follows s, so s[n-1] is L-type.
	t := make(bits, (n+63)/64)
	for i := n - 2; i >= 0; i-- {
		if s[i] < s[i+1] || (s[i] == s[i+1] && t.get(i+1)) {
			t.set(i)
		}
	}
	isLMS := func(i int) bool { return i > 0 && t.get(i) && !t.get(i-1) }
	bkt := make([]int32, k)
	// Step 1: sort LMS substrings by induced sorting.
	bucketEnds(s, bkt)
	for i := range sa {
		sa[i] = -1
	}
	for i := 1; i < n; i++ {
		if isLMS(i) {
			c := s[i]
			bkt[c]--
			sa[bkt[c]] = int32(i)
		}
	}
	induce(s, sa, bkt, t)

	// Compact the sorted LMS positions into sa[:m].
	m := 0
	for i := 0; i < n; i++ {
		if isLMS(int(sa[i])) {
			sa[m] = sa[i]
			m++
		}
	}
	for i := m; i < n; i++ {
		sa[i] = -1
	}
	// Name LMS substrings; equal substrings get equal names.
	name, prev := 0, -1
	for i := 0; i < m; i++ {
		pos := int(sa[i])
		diff := false
		for d := 0; ; d++ {
			if prev == -1 || pos+d == n || prev+d == n || s[pos+d] != s[prev+d] || t.get(pos+d) != t.get(prev+d) {
				diff = true
				break
			}
			if d > 0 && (isLMS(pos+d) || isLMS(prev+d)) {
				break
			}
		}
		if diff {
			name++
			prev = pos
		}
		sa[m+pos>>1] = int32(name - 1)
	}
	// Gather names, in text order, into sa[n-m:].
	for i, j := n-1, n-1; i >= m; i-- {
		if sa[i] >= 0 {
			sa[j] = sa[i]
			j--
		}
	}
	// Step 2: sort the reduced string.
	s1 := sa[n-m:]
	sa1 := sa[:m]
	if name < m {
		build(s1, sa1, name)
	} else {
		for i, c := range s1 {
			sa1[c] = int32(i)
		}
	}
	// Step 3: induce the full order from the sorted LMS suffixes.
	j := 0
	for i := 1; i < n; i++ {
		if isLMS(i) {
			s1[j] = int32(i)
			j++
		}
	}
	for i := range sa1 {
		sa1[i] = s1[sa1[i]]
	}
	for i := m; i < n; i++ {
		sa[i] = -1
	}
	bucketEnds(s, bkt)
	for i := m - 1; i >= 0; i-- {
		p := sa[i]
		sa[i] = -1
		c := s[p]
		bkt[c]--
		sa[bkt[c]] = p
	}
	induce(s, sa, bkt, t)
}

func bucketEnds[T symbol](s []T, bkt []int32) {
	for i := range bkt {
		bkt[i] = 0
	}
	for _, c := range s {
		bkt[c]++
	}
	var sum int32
	for i, c := range bkt {
		sum += c
		bkt[i] = sum
	}
}

func bucketStarts[T symbol](s []T, bkt []int32) {
	for i := range bkt {
		bkt[i] = 0
	}
	for _, c := range s {
		bkt[c]++
	}
	var sum int32
	for i, c := range bkt {
		bkt[i] = sum
		sum += c
	}
}

// induce sorts L-type then S-type suffixes from the LMS suffixes already
// placed at their bucket ends.
func induce[T symbol](s []T, sa, bkt []int32, t bits) {
	n := len(s)
	bucketStarts(s, bkt)
	// The suffix just before the virtual sentinel is L-type and smallest
	// in its bucket.
	c := s[n-1]
	sa[bkt[c]] = int32(n - 1)
	bkt[c]++
	for i := 0; i < n; i++ {
		j := int(sa[i]) - 1
		if j >= 0 && !t.get(j) {
			c := s[j]
			sa[bkt[c]] = int32(j)
			bkt[c]++
		}
	}
	bucketEnds(s, bkt)
	for i := n - 1; i >= 0; i-- {
		j := int(sa[i]) - 1
		if j >= 0 && t.get(j) {
			c := s[j]
			bkt[c]--
			sa[bkt[c]] = int32(j)
		}
	}
}
