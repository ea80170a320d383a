package sais

import (
	"bytes"
	"math/rand/v2"
	"sort"
	"testing"
)

func naive(text []byte) []int32 {
	sa := make([]int32, len(text))
	for i := range sa {
		sa[i] = int32(i)
	}
	sort.Slice(sa, func(a, b int) bool { return bytes.Compare(text[sa[a]:], text[sa[b]:]) < 0 })
	return sa
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name string
		text string
	}{
		{"empty", ""},
		{"one", "a"},
		{"run", "aaaaaaaa"},
		{"banana", "banana"},
		{"mississippi", "mississippi"},
		{"decreasing", "zyxwvu"},
		{"increasing", "abcdef"},
		{"periodic", "abababababab"},
		{"zeros", "\x00\x00\x00\x01\x00\x00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check(t, []byte(tc.text))
		})
	}
}

func TestBuildRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 3000; iter++ {
		n := r.IntN(200)
		alpha := 1 + r.IntN(4)
		if iter%10 == 0 {
			alpha = 256
		}
		text := make([]byte, n)
		for i := range text {
			text[i] = byte(r.IntN(alpha))
		}
		check(t, text)
	}
}

func check(t *testing.T, text []byte) {
	t.Helper()
	got := make([]int32, len(text))
	Build(text, got)
	want := naive(text)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Build(%q) = %v, want %v", text, got, want)
		}
	}
}
