package gpt

import (
	"encoding/binary"
	"fmt"
)

const (
	mbrSize       = 512
	mbrTable      = 446
	mbrTypeGPT    = 0xee
	mbrMaxSectors = 0xffffffff
)

// pmbrSectors is the size a protective entry must record for a disk of
// sectors logical sectors.
func pmbrSectors(sectors uint64) uint32 {
	if sectors-1 > mbrMaxSectors {
		return mbrMaxSectors
	}
	return uint32(sectors - 1)
}

// checkPMBR reports what is wrong with the MBR b (512 bytes) of a disk of
// sectors logical sectors. A hybrid MBR (other entries besides 0xEE) is
// accepted as it is.
func checkPMBR(b []byte, sectors uint64) error {
	if b[510] != 0x55 || b[511] != 0xaa {
		return fmt.Errorf("%w: protective MBR: no 55 AA signature", ErrCorrupt)
	}
	gpt, others := -1, 0
	for i := range 4 {
		e := b[mbrTable+16*i : mbrTable+16*(i+1)]
		switch {
		case e[4] == mbrTypeGPT && gpt < 0:
			gpt = i
		case e[4] != 0:
			others++
		}
	}
	if gpt < 0 {
		return fmt.Errorf("%w: protective MBR: no partition of type 0xEE", ErrCorrupt)
	}
	e := b[mbrTable+16*gpt:]
	start, size := binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:])
	if others == 0 && (start != 1 || size != pmbrSectors(sectors)) {
		return fmt.Errorf("%w: protective MBR covers LBA %d+%d, disk has %d sectors", ErrCorrupt, start, size, sectors)
	}
	return nil
}

// fixPMBR returns old (512 bytes) made protective for the disk: boot code
// and disk signature (bytes 0..445) are kept; a present 0xEE entry is
// resized, otherwise the table becomes one 0xEE entry.
func fixPMBR(old []byte, sectors uint64) []byte {
	b := append([]byte(nil), old[:mbrSize]...)
	for i := range 4 {
		e := b[mbrTable+16*i : mbrTable+16*(i+1)]
		if e[4] == mbrTypeGPT && b[510] == 0x55 && b[511] == 0xaa {
			binary.LittleEndian.PutUint32(e[8:], 1)
			binary.LittleEndian.PutUint32(e[12:], pmbrSectors(sectors))
			return b
		}
	}
	clear(b[mbrTable:510])
	e := b[mbrTable:]
	copy(e[0:8], []byte{0x00, 0x00, 0x02, 0x00, mbrTypeGPT, 0xff, 0xff, 0xff})
	binary.LittleEndian.PutUint32(e[8:], 1)
	binary.LittleEndian.PutUint32(e[12:], pmbrSectors(sectors))
	b[510], b[511] = 0x55, 0xaa
	return b
}
