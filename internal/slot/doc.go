// Package slot is the A/B pair of a disk over pkg/gpt: which slot is
// booted, which one is passive, read-only access to the first and bounded
// write access to the second, and the GPT flips the engine performs.
//
// A disk is an image file (slots addressed by byte offset, no root needed)
// or a block device: a whole disk such as /dev/loop0 or /dev/sda, whose
// slots are opened through their partition nodes (/dev/loop0p3) when the
// kernel has them, else by offset.
//
// The slots are the two partitions of the CoreOS/Flatcar usr type
// 5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6: USR-A/USR-B (indexes 3 and 4) in the
// Flatcar layout, ROOT-A/ROOT-B in the simple one. The lower index is A.
//
// The booted slot comes from Options.Booted or the kernel command line:
// usr=, mount.usr=, verity.usr=, root= (in that order), each naming
// PARTUUID=<guid>, PARTLABEL=<label>, /dev/disk/by-partuuid/<guid>, or a
// partition node of this disk (/dev/sda3, /dev/loop0p3).
//
// The GPT is not cached: every flip reads, repairs if needed, changes and
// writes both GPT copies (pkg/gpt's crash-safe order) under Disk's mutex.
package slot
