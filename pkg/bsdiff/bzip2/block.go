package bzip2

import "github.com/abupdate/update_engine/pkg/bsdiff/internal/sais"

const (
	groupSize = 50
	maxCode   = 17 // bzip2 writes at most 17-bit codes (format limit 20)
	maxGroups = 6
	runA      = 0
	runB      = 1
)

// encoder holds buffers reused across blocks.
type encoder struct {
	doubled []byte
	sa      []int32
	bwt     []byte
	syms    []uint16
}

// encode writes one block of RLE1 data with its (finalised) CRC.
func (e *encoder) encode(bw *bitWriter, block []byte, crc uint32) {
	n := len(block)
	origPtr := e.transform(block)

	// Symbol map.
	var inUse [256]bool
	for _, c := range block {
		inUse[c] = true
	}
	var unseqToSeq [256]byte
	nInUse := 0
	for c := range inUse {
		if inUse[c] {
			unseqToSeq[c] = byte(nInUse)
			nInUse++
		}
	}
	alphaSize := nInUse + 2
	eob := uint16(nInUse + 1)

	// Move-to-front and zero-run coding.
	var freq [258]int32
	e.syms = e.syms[:0]
	emit := func(s uint16) {
		e.syms = append(e.syms, s)
		freq[s]++
	}
	var mtf [256]byte
	for i := range mtf {
		mtf[i] = byte(i)
	}
	zrun := 0
	flushRun := func() {
		for r := zrun; r > 0; {
			if r&1 == 1 {
				emit(runA)
				r = (r - 1) / 2
			} else {
				emit(runB)
				r = (r - 2) / 2
			}
		}
		zrun = 0
	}
	for _, c := range e.bwt[:n] {
		s := unseqToSeq[c]
		if mtf[0] == s {
			zrun++
			continue
		}
		flushRun()
		j := 1
		for mtf[j] != s {
			j++
		}
		copy(mtf[1:j+1], mtf[:j])
		mtf[0] = s
		emit(uint16(j + 1))
	}
	flushRun()
	emit(eob)

	nGroups, selectors, lengths := chooseTables(e.syms, freq[:alphaSize])

	// Block header.
	bw.write48(0x314159265359)
	bw.write(32, crc)
	bw.write(1, 0)
	bw.write(24, uint32(origPtr))
	var used16 uint32
	for i := 0; i < 16; i++ {
		for j := 0; j < 16; j++ {
			if inUse[i*16+j] {
				used16 |= 1 << (15 - i)
			}
		}
	}
	bw.write(16, used16)
	for i := 0; i < 16; i++ {
		if used16&(1<<(15-i)) == 0 {
			continue
		}
		var bitsUsed uint32
		for j := 0; j < 16; j++ {
			if inUse[i*16+j] {
				bitsUsed |= 1 << (15 - j)
			}
		}
		bw.write(16, bitsUsed)
	}
	bw.write(3, uint32(nGroups))
	bw.write(15, uint32(len(selectors)))
	var order [maxGroups]byte
	for i := range order {
		order[i] = byte(i)
	}
	for _, s := range selectors {
		j := 0
		for order[j] != s {
			j++
		}
		copy(order[1:j+1], order[:j])
		order[0] = s
		for ; j > 0; j-- {
			bw.write(1, 1)
		}
		bw.write(1, 0)
	}
	for t := 0; t < nGroups; t++ {
		cur := int(lengths[t][0])
		bw.write(5, uint32(cur))
		for _, l := range lengths[t][:alphaSize] {
			for ; cur < int(l); cur++ {
				bw.write(2, 2)
			}
			for ; cur > int(l); cur-- {
				bw.write(2, 3)
			}
			bw.write(1, 0)
		}
	}

	// Symbols.
	var codes [maxGroups][258]uint32
	for t := 0; t < nGroups; t++ {
		assignCodes(lengths[t][:alphaSize], codes[t][:alphaSize])
	}
	for g, sel := range selectors {
		end := min((g+1)*groupSize, len(e.syms))
		ln, cd := &lengths[sel], &codes[sel]
		for _, s := range e.syms[g*groupSize : end] {
			bw.write(uint(ln[s]), cd[s])
		}
	}
}

// transform computes the Burrows-Wheeler transform of block into e.bwt
// and returns origPtr, the rank of the unrotated block. Rotations are
// ordered by the suffixes of block+block that start in the first half;
// equal rotations may come in any order without changing the output.
func (e *encoder) transform(block []byte) int {
	n := len(block)
	e.doubled = append(append(e.doubled[:0], block...), block...)
	if cap(e.sa) < 2*n {
		e.sa = make([]int32, 2*n)
	}
	sa := e.sa[:2*n]
	sais.Build(e.doubled, sa)
	if cap(e.bwt) < n {
		e.bwt = make([]byte, n)
	}
	bwt := e.bwt[:n]
	j, origPtr := 0, 0
	for _, p := range sa {
		if int(p) >= n {
			continue
		}
		if p == 0 {
			origPtr = j
			bwt[j] = block[n-1]
		} else {
			bwt[j] = block[p-1]
		}
		j++
	}
	return origPtr
}

// chooseTables picks 2-6 Huffman tables and a table per 50 symbols,
// refining both over four passes as bzip2 does.
func chooseTables(syms []uint16, freq []int32) (int, []byte, [maxGroups][258]uint8) {
	alphaSize := len(freq)
	var lengths [maxGroups][258]uint8
	nMTF := len(syms)
	nGroups := 6
	switch {
	case nMTF < 200:
		nGroups = 2
	case nMTF < 600:
		nGroups = 3
	case nMTF < 1200:
		nGroups = 4
	case nMTF < 2400:
		nGroups = 5
	}
	// Initial tables: each cheap on a band of symbols with about equal
	// total frequency.
	remF, gs := nMTF, 0
	for nPart := nGroups; nPart > 0; nPart-- {
		tFreq := remF / nPart
		ge, aFreq := gs-1, 0
		for aFreq < tFreq && ge < alphaSize-1 {
			ge++
			aFreq += int(freq[ge])
		}
		if ge > gs && nPart != nGroups && nPart != 1 && (nGroups-nPart)%2 == 1 {
			aFreq -= int(freq[ge])
			ge--
		}
		for v := 0; v < alphaSize; v++ {
			if v >= gs && v <= ge {
				lengths[nPart-1][v] = 0
			} else {
				lengths[nPart-1][v] = 15
			}
		}
		gs = ge + 1
		remF -= aFreq
	}
	nSel := (nMTF + groupSize - 1) / groupSize
	selectors := make([]byte, nSel)
	var tfreq [maxGroups][258]int32
	for iter := 0; iter < 4; iter++ {
		for t := range tfreq {
			clear(tfreq[t][:])
		}
		for g := 0; g < nSel; g++ {
			grp := syms[g*groupSize : min((g+1)*groupSize, nMTF)]
			best, bestCost := 0, int(^uint(0)>>1)
			for t := 0; t < nGroups; t++ {
				cost := 0
				for _, s := range grp {
					cost += int(lengths[t][s])
				}
				if cost < bestCost {
					best, bestCost = t, cost
				}
			}
			selectors[g] = byte(best)
			for _, s := range grp {
				tfreq[best][s]++
			}
		}
		for t := 0; t < nGroups; t++ {
			codeLengths(tfreq[t][:alphaSize], maxCode, lengths[t][:alphaSize])
		}
	}
	return nGroups, selectors, lengths
}
