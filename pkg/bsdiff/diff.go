package bsdiff

import (
	"context"
	"encoding/binary"
	"math/bits"

	"github.com/abupdate/update_engine/pkg/bsdiff/internal/sais"
)

// MaxDiffInput is the largest old or new input Diff accepts (suffix
// array indices are int32).
const MaxDiffInput = 1<<31 - 2

// MaxDiffInput must equal sais.MaxLen (compile-time check).
var _ [MaxDiffInput - sais.MaxLen]struct{}
var _ [sais.MaxLen - MaxDiffInput]struct{}

// skipMatch is the match length beyond which the scan skips ahead
// inside a match instead of searching from every byte of it.
const skipMatch = 128

// rawPatch is a patch before compression: its three streams.
type rawPatch struct {
	ctrl  []byte
	diff  []byte
	extra []byte
}

func (p *rawPatch) addCtrl(d, x, s int64) {
	var b [24]byte
	putInt(b[0:], d)
	putInt(b[8:], x)
	putInt(b[16:], s)
	p.ctrl = append(p.ctrl, b[:]...)
}

// differ holds the inputs and the suffix array of old.
type differ struct {
	old, new []byte
	sa       []int32
}

// matchLen returns the length of the common prefix of a and b.
func matchLen(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		x := binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:])
		if x != 0 {
			return i + bits.TrailingZeros64(x)/8
		}
	}
	for ; i < n && a[i] == b[i]; i++ {
	}
	return i
}

// search finds the old suffix sharing the longest prefix with nw and
// returns its start and the prefix length. It is a binary search for
// where nw would sit among the sorted suffixes, keeping the best common
// prefix seen; both neighbours of that place are probed, and one of them
// has the longest. (bsdiff's search ranks an old suffix that is a prefix
// of nw after it and can end far from the longest match, which in long
// runs of zeros makes it take tiny matches at great cost.)
func (d *differ) search(nw []byte) (pos, n int) {
	st, en := 0, len(d.sa)
	best := -1
	for st < en {
		x := st + (en-st)/2
		p := int(d.sa[x])
		o := d.old[p:]
		l := matchLen(o, nw)
		if l > best {
			best, pos = l, p
		}
		if l == len(nw) {
			break
		}
		if l == len(o) || o[l] < nw[l] {
			st = x + 1
		} else {
			en = x
		}
	}
	return pos, max(best, 0)
}

// diff computes the patch streams with Percival's bsdiff scan: extend
// approximate matches found through the suffix array forwards and
// backwards, store their bytewise differences (mostly zeros, so they
// compress well) and the unmatched bytes as extra data.
func (d *differ) diff(ctx context.Context) (*rawPatch, error) {
	old, nw := d.old, d.new
	oldSize, newSize := len(old), len(nw)
	// diff and extra together are exactly newSize bytes.
	p := &rawPatch{diff: make([]byte, 0, newSize), extra: make([]byte, 0, newSize/16)}
	var scan, n, pos, lastScan, lastPos, lastOffset int
	iter := 0
	for scan < newSize {
		oldScore := 0
		scan += n
		scsc := scan
		for ; scan < newSize; scan++ {
			iter++
			if iter&0xfff == 0 {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
			}
			pos, n = d.search(nw[scan:])
			for ; scsc < scan+n; scsc++ {
				if scsc+lastOffset < oldSize && old[scsc+lastOffset] == nw[scsc] {
					oldScore++
				}
			}
			if (n == oldScore && n != 0) || n > oldScore+8 {
				break
			}
			// Step past the position. Inside a long match that the
			// current alignment covers almost as well (within 8 bytes),
			// no nearby start can do much better: skip most of it rather
			// than search from every byte, which is quadratic in the
			// length of long runs (zeros in filesystem images).
			step := 1
			if n > skipMatch {
				step = n - skipMatch/2
			}
			for i := scan; i < scan+step; i++ {
				if i+lastOffset < oldSize && old[i+lastOffset] == nw[i] {
					oldScore--
				}
			}
			scan += step - 1
		}
		if n == oldScore && scan != newSize {
			continue
		}
		// Extend the previous match forwards...
		lenF := 0
		{
			s, best := 0, 0
			for i := 0; lastScan+i < scan && lastPos+i < oldSize; {
				if old[lastPos+i] == nw[lastScan+i] {
					s++
				}
				i++
				if s*2-i > best*2-lenF {
					best, lenF = s, i
				}
			}
		}
		// ...and the new one backwards.
		lenB := 0
		if scan < newSize {
			s, best := 0, 0
			for i := 1; scan >= lastScan+i && pos >= i; i++ {
				if old[pos-i] == nw[scan-i] {
					s++
				}
				if s*2-i > best*2-lenB {
					best, lenB = s, i
				}
			}
		}
		// Split an overlap where it scores best.
		if lastScan+lenF > scan-lenB {
			overlap := (lastScan + lenF) - (scan - lenB)
			s, best, lenS := 0, 0, 0
			for i := 0; i < overlap; i++ {
				if nw[lastScan+lenF-overlap+i] == old[lastPos+lenF-overlap+i] {
					s++
				}
				if nw[scan-lenB+i] == old[pos-lenB+i] {
					s--
				}
				if s > best {
					best, lenS = s, i+1
				}
			}
			lenF += lenS - overlap
			lenB -= lenS
		}
		for i := 0; i < lenF; i++ {
			p.diff = append(p.diff, nw[lastScan+i]-old[lastPos+i])
		}
		p.extra = append(p.extra, nw[lastScan+lenF:scan-lenB]...)
		p.addCtrl(int64(lenF), int64((scan-lenB)-(lastScan+lenF)), int64((pos-lenB)-(lastPos+lenF)))
		lastScan, lastPos, lastOffset = scan-lenB, pos-lenB, pos-scan
	}
	return p, nil
}
