package gpt

import (
	"encoding/binary"
	"fmt"
	"unicode/utf16"
)

// Entry sizes and the name field.
const (
	minEntrySize = 128
	nameOffset   = 56
	nameUnits    = 36
)

// A/B attribute bit positions (see the package doc).
const (
	PriorityShift   = 48
	TriesShift      = 52
	SuccessfulShift = 56
	MaxPriority     = 15
	MaxTries        = 15

	priorityMask   = uint64(0xf) << PriorityShift
	triesMask      = uint64(0xf) << TriesShift
	successfulMask = uint64(1) << SuccessfulShift
)

// Entry is one partition entry. The zero Type marks an unused entry.
type Entry struct {
	Type       GUID
	GUID       GUID // unique partition GUID (PARTUUID)
	FirstLBA   uint64
	LastLBA    uint64 // inclusive
	Attributes uint64
	Name       string

	// raw holds the entry as read, so that bytes this package does not
	// interpret (beyond 128, after the name's NUL) survive a rewrite.
	raw []byte
}

// IsUsed reports whether the entry describes a partition.
func (e *Entry) IsUsed() bool { return !e.Type.IsZero() }

// Sectors is the partition's length in logical sectors.
func (e *Entry) Sectors() uint64 {
	if e.LastLBA < e.FirstLBA {
		return 0
	}
	return e.LastLBA - e.FirstLBA + 1
}

// Priority is attribute bits 48-51.
func (e *Entry) Priority() int { return int(e.Attributes & priorityMask >> PriorityShift) }

// Tries is attribute bits 52-55.
func (e *Entry) Tries() int { return int(e.Attributes & triesMask >> TriesShift) }

// Successful is attribute bit 56.
func (e *Entry) Successful() bool { return e.Attributes&successfulMask != 0 }

// SetPriority sets bits 48-51 to p, 0..15.
func (e *Entry) SetPriority(p int) error {
	if p < 0 || p > MaxPriority {
		return fmt.Errorf("%w: priority %d not in 0..%d", ErrInvalid, p, MaxPriority)
	}
	e.Attributes = e.Attributes&^priorityMask | uint64(p)<<PriorityShift
	return nil
}

// SetTries sets bits 52-55 to n, 0..15.
func (e *Entry) SetTries(n int) error {
	if n < 0 || n > MaxTries {
		return fmt.Errorf("%w: tries %d not in 0..%d", ErrInvalid, n, MaxTries)
	}
	e.Attributes = e.Attributes&^triesMask | uint64(n)<<TriesShift
	return nil
}

// SetSuccessful sets or clears bit 56.
func (e *Entry) SetSuccessful(ok bool) {
	e.Attributes &^= successfulMask
	if ok {
		e.Attributes |= successfulMask
	}
}

func decodeName(b []byte) string {
	u := make([]uint16, 0, nameUnits)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

func nameLen(name string) int { return len(utf16.Encode([]rune(name))) }

func encodeName(dst []byte, name string) error {
	u := utf16.Encode([]rune(name))
	if len(u) > nameUnits {
		return fmt.Errorf("%w: name %q is %d UTF-16 units, at most %d fit", ErrInvalid, name, len(u), nameUnits)
	}
	clear(dst[:nameUnits*2])
	for i, c := range u {
		binary.LittleEndian.PutUint16(dst[2*i:], c)
	}
	return nil
}

func parseEntry(b []byte) Entry {
	var e Entry
	copy(e.Type[:], b[0:16])
	copy(e.GUID[:], b[16:32])
	e.FirstLBA = binary.LittleEndian.Uint64(b[32:])
	e.LastLBA = binary.LittleEndian.Uint64(b[40:])
	e.Attributes = binary.LittleEndian.Uint64(b[48:])
	e.Name = decodeName(b[nameOffset : nameOffset+nameUnits*2])
	e.raw = append([]byte(nil), b...)
	return e
}

// marshal writes e into dst (one entry, len(dst) = entry size).
func (e *Entry) marshal(dst []byte) error {
	clear(dst)
	if len(e.raw) == len(dst) {
		copy(dst, e.raw)
	}
	if !e.IsUsed() && e.raw == nil {
		return nil
	}
	copy(dst[0:16], e.Type[:])
	copy(dst[16:32], e.GUID[:])
	binary.LittleEndian.PutUint64(dst[32:], e.FirstLBA)
	binary.LittleEndian.PutUint64(dst[40:], e.LastLBA)
	binary.LittleEndian.PutUint64(dst[48:], e.Attributes)
	name := dst[nameOffset : nameOffset+nameUnits*2]
	if e.raw == nil || decodeName(name) != e.Name {
		return encodeName(name, e.Name)
	}
	return nil
}
