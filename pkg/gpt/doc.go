// Package gpt reads, validates, repairs and writes GUID Partition Tables
// (UEFI 2.x, chapter 5) on image files and block devices, and implements the
// A/B boot attributes that ChromeOS cgpt, vboot and CoreOS/Flatcar GRUB
// gptprio share.
//
// # On-disk layout
//
// LBA = logical block address in units of the logical sector size (512 or
// 4096 bytes); N = last LBA of the disk; E = sectors taken by the entry array
// (128 entries × 128 bytes = 16 KiB = 32 sectors of 512 or 4 of 4096).
//
//	LBA 0          protective MBR: bytes 446..509 hold four 16-byte MBR
//	               entries, one of type 0xEE starting at LBA 1 and covering
//	               the disk (size capped at 0xFFFFFFFF); bytes 510..511 = 55 AA.
//	               Bytes 0..445 (boot code, disk signature) are never touched.
//	LBA 1          primary header
//	LBA 2..2+E-1   primary entry array
//	...            partitions, between FirstUsableLBA and LastUsableLBA
//	LBA N-E..N-1   backup entry array
//	LBA N          backup header
//
// Header (little-endian; the rest of its sector is zero):
//
//	off size field
//	  0    8 signature "EFI PART"
//	  8    4 revision 0x00010000
//	 12    4 header size (92)
//	 16    4 CRC32 (IEEE) of the header's first <header size> bytes, this field zeroed
//	 20    4 reserved, 0
//	 24    8 MyLBA (1 in the primary, N in the backup)
//	 32    8 AlternateLBA (the other copy's header)
//	 40    8 FirstUsableLBA
//	 48    8 LastUsableLBA
//	 56   16 disk GUID
//	 72    8 PartitionEntryLBA (2 in the primary, N-E in the backup)
//	 80    4 number of entries (128)
//	 84    4 size of one entry (128; a multiple of 128)
//	 88    4 CRC32 of the whole entry array
//
// Entry (little-endian; an all-zero type GUID marks an unused entry):
//
//	off size field
//	  0   16 partition type GUID
//	 16   16 unique partition GUID
//	 32    8 first LBA
//	 40    8 last LBA (inclusive)
//	 48    8 attributes
//	 56   72 name, UTF-16LE, up to 36 code units, NUL padded
//
// GUIDs are stored mixed-endian: the first three fields of the textual form
// little-endian, the last two as bytes in order.
//
// # Attribute bits
//
//	bit  0      platform required            bit 60  read-only (Microsoft)
//	bit  1      no block-IO protocol         bit 62  hidden (Microsoft)
//	bit  2      legacy BIOS bootable         bit 63  no automount (Microsoft)
//	bits 48-51  priority (0-15; 0 = never boot)
//	bits 52-55  tries remaining (0-15)
//	bit  56     successful (booted to userspace at least once)
//
// Only bits 48-56 are ever changed by this package; every other bit is
// preserved, as are entry bytes beyond the 128 defined here.
//
// # Boot selection
//
// GRUB gptprio and vboot pick, among the entries of one type (CoreOS/Flatcar
// usr 5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6, ChromeOS kernel
// fe3a2a5d-4f32-41a7-b725-accc3285a309) with priority > 0 and (tries > 0 or
// successful), the highest priority, the lowest index on ties. GRUB then
// decrements a non-zero tries; vboot does the same for non-successful
// entries and clears priority and tries when the last try is used.
//
// # Crash safety
//
// [Table.Write] writes the backup array, the backup header, syncs, then the
// primary array and the primary header, and syncs again. A write torn at
// any point leaves at least one copy whose header and array CRCs agree: the
// old primary until the backup header is complete, the new backup after.
// [Read] prefers a valid primary, falls back to the backup, and reports in a
// [Report] what [Disk.Update] then repairs.
package gpt
