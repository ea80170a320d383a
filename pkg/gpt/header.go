package gpt

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

const (
	signature      = "EFI PART"
	revision1      = 0x00010000
	headerSize     = 92
	maxArrayBytes  = 4 << 20 // 4 MiB: far above any real table (16 KiB)
	maxEntrySize   = 4096
	defaultEntries = 128
)

// header is one parsed GPT header.
type header struct {
	myLBA, altLBA           uint64
	firstUsable, lastUsable uint64
	diskGUID                GUID
	entriesLBA              uint64
	numEntries, entrySize   uint32
	entriesCRC              uint32
}

func (h *header) arrayBytes() uint64 { return uint64(h.numEntries) * uint64(h.entrySize) }

func arraySectors(bytes uint64, ss int) uint64 { return (bytes + uint64(ss) - 1) / uint64(ss) }

// parseHeader checks and decodes the header sector b, read at LBA at.
// which names the copy ("primary", "backup") in errors.
func parseHeader(b []byte, at, lastLBA uint64, ss int, which string) (header, error) {
	var h header
	bad := func(format string, args ...any) (header, error) {
		return h, fmt.Errorf("%w: %s header at LBA %d: %s", ErrCorrupt, which, at, fmt.Sprintf(format, args...))
	}
	if string(b[0:8]) != signature {
		return bad("no %q signature", signature)
	}
	if rev := binary.LittleEndian.Uint32(b[8:]); rev>>16 != 1 {
		return bad("revision %#08x, want 1.x", rev)
	}
	size := binary.LittleEndian.Uint32(b[12:])
	if size < headerSize || int(size) > ss {
		return bad("header size %d not in %d..%d", size, headerSize, ss)
	}
	stored := binary.LittleEndian.Uint32(b[16:])
	tmp := make([]byte, size)
	copy(tmp, b[:size])
	binary.LittleEndian.PutUint32(tmp[16:], 0)
	if got := crc32.ChecksumIEEE(tmp); got != stored {
		return bad("header CRC32 %#08x, computed %#08x", stored, got)
	}
	h.myLBA = binary.LittleEndian.Uint64(b[24:])
	h.altLBA = binary.LittleEndian.Uint64(b[32:])
	h.firstUsable = binary.LittleEndian.Uint64(b[40:])
	h.lastUsable = binary.LittleEndian.Uint64(b[48:])
	copy(h.diskGUID[:], b[56:72])
	h.entriesLBA = binary.LittleEndian.Uint64(b[72:])
	h.numEntries = binary.LittleEndian.Uint32(b[80:])
	h.entrySize = binary.LittleEndian.Uint32(b[84:])
	h.entriesCRC = binary.LittleEndian.Uint32(b[88:])

	if h.myLBA != at {
		return bad("MyLBA is %d", h.myLBA)
	}
	if h.entrySize < minEntrySize || h.entrySize > maxEntrySize || h.entrySize%minEntrySize != 0 {
		return bad("entry size %d, want a multiple of %d up to %d", h.entrySize, minEntrySize, maxEntrySize)
	}
	if h.numEntries == 0 || h.arrayBytes() > maxArrayBytes {
		return bad("%d entries of %d bytes: array must be 1 byte..%d bytes", h.numEntries, h.entrySize, maxArrayBytes)
	}
	n := arraySectors(h.arrayBytes(), ss)
	if at == 1 && h.altLBA > lastLBA {
		return bad("backup expected at LBA %d, past the end of the disk (last LBA %d): truncated image?", h.altLBA, lastLBA)
	}
	if h.firstUsable > h.lastUsable || h.lastUsable >= lastLBA {
		return bad("usable LBAs %d..%d outside the disk (last LBA %d)", h.firstUsable, h.lastUsable, lastLBA)
	}
	if at == 1 { // primary: array after the header, before the partitions
		if h.entriesLBA < 2 || h.entriesLBA+n > h.firstUsable {
			return bad("entry array at LBA %d..%d overlaps header or first usable LBA %d", h.entriesLBA, h.entriesLBA+n-1, h.firstUsable)
		}
	} else { // backup: array after the partitions, before the header
		if h.altLBA != 1 {
			return bad("AlternateLBA is %d, want 1", h.altLBA)
		}
		if h.entriesLBA <= h.lastUsable || h.entriesLBA+n > at {
			return bad("entry array at LBA %d..%d overlaps last usable LBA %d or the header", h.entriesLBA, h.entriesLBA+n-1, h.lastUsable)
		}
	}
	return h, nil
}

// marshal encodes h into a full sector.
func (h *header) marshal(ss int) []byte {
	b := make([]byte, ss)
	copy(b[0:8], signature)
	binary.LittleEndian.PutUint32(b[8:], revision1)
	binary.LittleEndian.PutUint32(b[12:], headerSize)
	binary.LittleEndian.PutUint64(b[24:], h.myLBA)
	binary.LittleEndian.PutUint64(b[32:], h.altLBA)
	binary.LittleEndian.PutUint64(b[40:], h.firstUsable)
	binary.LittleEndian.PutUint64(b[48:], h.lastUsable)
	copy(b[56:72], h.diskGUID[:])
	binary.LittleEndian.PutUint64(b[72:], h.entriesLBA)
	binary.LittleEndian.PutUint32(b[80:], h.numEntries)
	binary.LittleEndian.PutUint32(b[84:], h.entrySize)
	binary.LittleEndian.PutUint32(b[88:], h.entriesCRC)
	binary.LittleEndian.PutUint32(b[16:], crc32.ChecksumIEEE(b[:headerSize]))
	return b
}
