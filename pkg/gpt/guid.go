package gpt

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// GUID is a GUID in its on-disk (mixed-endian) byte order.
type GUID [16]byte

// Well-known partition type GUIDs.
var (
	// TypeCoreOSUsr is the CoreOS/Flatcar /usr (and rootfs A/B) type that
	// GRUB gptprio selects among.
	TypeCoreOSUsr = MustParseGUID("5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6")
	// TypeCoreOSResize is the CoreOS/Flatcar ROOT partition (grown on boot).
	TypeCoreOSResize = MustParseGUID("3884dd41-8582-4404-b9a8-e9b84f2df50e")
	// TypeCoreOSReserved is the CoreOS/Flatcar OEM-CONFIG type.
	TypeCoreOSReserved = MustParseGUID("c95dc21a-df0e-4340-8d7b-26cbfa9a03e0")
	// TypeChromeOSKernel is the ChromeOS kernel type that cgpt prioritize
	// and vboot select among.
	TypeChromeOSKernel = MustParseGUID("fe3a2a5d-4f32-41a7-b725-accc3285a309")
	// TypeEFISystem is the EFI system partition.
	TypeEFISystem = MustParseGUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
	// TypeBIOSBoot is the GRUB BIOS boot partition.
	TypeBIOSBoot = MustParseGUID("21686148-6449-6e6f-744e-656564454649")
	// TypeLinuxData is the Linux filesystem data type.
	TypeLinuxData = MustParseGUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
)

// ParseGUID parses the textual form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx,
// in either case, optionally in braces.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	t := strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	if len(t) != 36 || t[8] != '-' || t[13] != '-' || t[18] != '-' || t[23] != '-' {
		return g, fmt.Errorf("%w: GUID %q: want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", ErrInvalid, s)
	}
	b, err := hex.DecodeString(t[0:8] + t[9:13] + t[14:18] + t[19:23] + t[24:36])
	if err != nil {
		return g, fmt.Errorf("%w: GUID %q: %v", ErrInvalid, s, err)
	}
	binary.LittleEndian.PutUint32(g[0:4], binary.BigEndian.Uint32(b[0:4]))
	binary.LittleEndian.PutUint16(g[4:6], binary.BigEndian.Uint16(b[4:6]))
	binary.LittleEndian.PutUint16(g[6:8], binary.BigEndian.Uint16(b[6:8]))
	copy(g[8:], b[8:])
	return g, nil
}

// MustParseGUID is ParseGUID for constants; it panics on a malformed s.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// NewGUID returns a random (version 4) GUID.
func NewGUID() GUID {
	var g GUID
	_, _ = rand.Read(g[:])  // never fails (crypto/rand contract)
	g[7] = g[7]&0x0f | 0x40 // version 4, high nibble of the LE third field
	g[8] = g[8]&0x3f | 0x80 // RFC 4122 variant
	return g
}

// IsZero reports whether g is the all-zero GUID (an unused entry's type).
func (g GUID) IsZero() bool { return g == GUID{} }

// String returns the lower-case textual form.
func (g GUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:4]), binary.LittleEndian.Uint16(g[4:6]),
		binary.LittleEndian.Uint16(g[6:8]), g[8:10], g[10:16])
}
