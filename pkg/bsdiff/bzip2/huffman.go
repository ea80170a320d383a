package bzip2

import (
	"container/heap"
	"slices"
)

// codeLengths returns Huffman code lengths, all in 1..maxLen, for the
// symbol frequencies freq (a zero frequency counts as one: every symbol
// needs a code). When the tree is too deep the frequencies are flattened
// and the tree rebuilt, as bzip2 does.
func codeLengths(freq []int32, maxLen int, lengths []uint8) {
	w := make([]int64, len(freq))
	for i, f := range freq {
		w[i] = max(int64(f), 1)
	}
	for {
		if huffman(w, lengths) <= maxLen {
			return
		}
		for i := range w {
			w[i] = 1 + w[i]/2
		}
	}
}

type node struct {
	weight int64
	depth  int // height of the subtree, to break ties toward shallow trees
	parent int
}

type nodeHeap struct {
	nodes []node
	idx   []int
}

func (h *nodeHeap) Len() int { return len(h.idx) }
func (h *nodeHeap) Less(i, j int) bool {
	a, b := h.nodes[h.idx[i]], h.nodes[h.idx[j]]
	if a.weight != b.weight {
		return a.weight < b.weight
	}
	return a.depth < b.depth
}
func (h *nodeHeap) Swap(i, j int) { h.idx[i], h.idx[j] = h.idx[j], h.idx[i] }
func (h *nodeHeap) Push(x any)    { h.idx = append(h.idx, x.(int)) }
func (h *nodeHeap) Pop() any {
	x := h.idx[len(h.idx)-1]
	h.idx = h.idx[:len(h.idx)-1]
	return x
}

// huffman sets lengths from weights (len >= 2) and returns the longest.
func huffman(w []int64, lengths []uint8) int {
	n := len(w)
	h := &nodeHeap{nodes: make([]node, n, 2*n)}
	for i := range w {
		h.nodes[i] = node{weight: w[i], parent: -1}
		h.idx = append(h.idx, i)
	}
	heap.Init(h)
	for h.Len() > 1 {
		a, b := heap.Pop(h).(int), heap.Pop(h).(int)
		p := len(h.nodes)
		h.nodes = append(h.nodes, node{
			weight: h.nodes[a].weight + h.nodes[b].weight,
			depth:  1 + max(h.nodes[a].depth, h.nodes[b].depth),
			parent: -1,
		})
		h.nodes[a].parent, h.nodes[b].parent = p, p
		heap.Push(h, p)
	}
	longest := 0
	for i := 0; i < n; i++ {
		d := 0
		for j := i; h.nodes[j].parent >= 0; j = h.nodes[j].parent {
			d++
		}
		lengths[i] = uint8(d)
		longest = max(longest, d)
	}
	return longest
}

// assignCodes gives canonical codes: by length, then by symbol.
func assignCodes(lengths []uint8, codes []uint32) {
	minLen, maxLen := slices.Min(lengths), slices.Max(lengths)
	code := uint32(0)
	for l := minLen; l <= maxLen; l++ {
		for s, sl := range lengths {
			if sl == l {
				codes[s] = code
				code++
			}
		}
		code <<= 1
	}
}
