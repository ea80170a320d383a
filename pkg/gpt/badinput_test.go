package gpt_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"github.com/abupdate/update_engine/pkg/gpt"
	"hash/crc32"
	"os"
	"strings"
	"testing"
)

// withPrimaryHeader rewrites field off of the primary and backup headers
// of a fresh 512-byte-sector image with v, fixing the header CRC so the
// field check itself is what must fail.
func withHeaderField(t *testing.T, off int, v uint64, width int) memDisk {
	m := memImage(t, smallAB(t, 512))
	for _, at := range []int{512, len(m) - 512} {
		h := m[at : at+512]
		if width == 4 {
			binary.LittleEndian.PutUint32(h[off:], uint32(v))
		} else {
			binary.LittleEndian.PutUint64(h[off:], v)
		}
		binary.LittleEndian.PutUint32(h[16:], 0)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
	}
	return m
}

func TestBadInput(t *testing.T) {
	garbage := make(memDisk, 1<<20)
	for i := range garbage {
		garbage[i] = byte(i*7 + i>>8)
	}
	tests := []struct {
		name    string
		disk    memDisk
		ss      int
		wantErr error
		want    string
	}{
		{name: "empty", disk: memDisk{}, ss: 512, wantErr: gpt.ErrNoValidGPT, want: "too small"},
		{name: "two sectors", disk: make(memDisk, 1024), ss: 512, wantErr: gpt.ErrNoValidGPT, want: "too small"},
		{name: "zeros", disk: make(memDisk, 1<<20), ss: 512, wantErr: gpt.ErrNoValidGPT, want: "signature"},
		{name: "garbage", disk: garbage, ss: 512, wantErr: gpt.ErrNoValidGPT, want: "signature"},
		{name: "bad sector size", disk: make(memDisk, 1<<20), ss: 100, wantErr: gpt.ErrInvalid, want: "sector size"},
		{name: "truncated image", disk: memImage(t, smallAB(t, 512))[:2<<20], ss: 512, wantErr: gpt.ErrNoValidGPT, want: "truncated"},
		{name: "only headers", disk: memImage(t, smallAB(t, 512))[:2048], ss: 512, wantErr: gpt.ErrNoValidGPT},
		{name: "4096 read as 512", disk: memImage(t, smallAB(t, 4096)), ss: 512, wantErr: gpt.ErrNoValidGPT, want: "signature"},
		{name: "absurd entry count", disk: withHeaderField(t, 80, 1<<31, 4), ss: 512, wantErr: gpt.ErrNoValidGPT, want: "entries of 128 bytes"},
		{name: "zero entries", disk: withHeaderField(t, 80, 0, 4), ss: 512, wantErr: gpt.ErrNoValidGPT, want: "0 entries"},
		{name: "absurd entry size", disk: withHeaderField(t, 84, 1<<30, 4), ss: 512, wantErr: gpt.ErrNoValidGPT, want: "entry size"},
		{name: "odd entry size", disk: withHeaderField(t, 84, 129, 4), ss: 512, wantErr: gpt.ErrNoValidGPT, want: "entry size"},
		{name: "header size huge", disk: withHeaderField(t, 12, 1<<31, 4), ss: 512, wantErr: gpt.ErrNoValidGPT, want: "header size"},
		{name: "entry LBA past end", disk: withHeaderField(t, 72, 1<<62, 8), ss: 512, wantErr: gpt.ErrNoValidGPT, want: "entry array"},
		{name: "last usable past end", disk: withHeaderField(t, 48, 1<<40, 8), ss: 512, wantErr: gpt.ErrNoValidGPT, want: "usable"},
		{name: "revision 2", disk: withHeaderField(t, 8, 0x00020000, 4), ss: 512, wantErr: gpt.ErrNoValidGPT, want: "revision"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := gpt.Read(tt.disk, int64(len(tt.disk)), tt.ss)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %q does not say %q", err, tt.want)
			}
		})
	}
	// A file shorter than it claims and unreadable disks are I/O errors.
	if _, _, err := gpt.Read(bytes.NewReader(nil), 1<<20, 512); !errors.Is(err, gpt.ErrIO) {
		t.Fatalf("short reader: err = %v, want ErrIO", err)
	}
	if _, err := gpt.Open(t.TempDir()+"/missing.img", os.O_RDONLY, 0); !errors.Is(err, gpt.ErrIO) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: err = %v", err)
	}
}

// FuzzRead: gpt.Read never panics; whatever it accepts can be written and read
// back to the same table.
func FuzzRead(f *testing.F) {
	small := func(ss int) []byte {
		// As few sectors as a valid GPT allows: small inputs fuzz (and
		// minimize) fast.
		sectors := map[int]uint64{512: 12, 4096: 8}[ss]
		tab := &gpt.Table{SectorSize: ss, Sectors: sectors, DiskGUID: gpt.NewGUID(), FirstUsableLBA: 3, LastUsableLBA: sectors - 3,
			EntryLBA: 2, EntrySize: 128, Entries: make([]gpt.Entry, 4)}
		tab.Entries[0] = gpt.Entry{Name: "USR-A", Type: gpt.TypeCoreOSUsr, GUID: gpt.NewGUID(), FirstLBA: 3, LastLBA: 4, Attributes: 1 << 48}
		m := make(memDisk, int64(tab.Sectors)*int64(ss))
		_, _ = tab.WritePMBR(m)
		if err := tab.Write(m); err != nil {
			f.Fatal(err)
		}
		return m
	}
	f.Add(small(512), false, false)
	f.Add(small(4096), true, true)
	corrupt := small(512)
	corrupt[520] ^= 1
	f.Add(corrupt, false, false)
	f.Add(corrupt, false, true)
	f.Add(small(512)[:1500], false, true)
	f.Add(small(4096)[:9000], true, false)
	f.Add(make([]byte, 4096), false, false)
	f.Fuzz(fuzzRead)
}

// fuzzRead is FuzzRead's body. With fixCRC it first makes both headers'
// CRCs (and their arrays' CRCs, where the array lies inside data) right, so
// that mutations reach the checks behind the CRCs.
func fuzzRead(t *testing.T, data []byte, big, fixCRC bool) {
	ss := 512
	if big {
		ss = 4096
	}
	m := memDisk(data)
	if fixCRC {
		fixCRCs(m, ss)
	}
	tab, rep, err := gpt.Read(m, int64(len(m)), ss)
	if err != nil {
		if !errors.Is(err, gpt.ErrNoValidGPT) && !errors.Is(err, gpt.ErrInvalid) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		return
	}
	_ = rep.String()
	_, _ = tab.Next(gpt.TypeCoreOSUsr)
	out := make(memDisk, len(m))
	copy(out, m)
	if tab.Check() != nil {
		return // readable but not writable as is (e.g. overlapping partitions)
	}
	if err := tab.Write(out); err != nil {
		t.Fatalf("Write of a checked table: %v", err)
	}
	again, rep2, err := gpt.Read(out, int64(len(out)), ss)
	if err != nil {
		t.Fatalf("re-read: %v", err)
	}
	if rep2.Primary != nil || rep2.Backup != nil || rep2.Mismatch || rep2.BackupMoved {
		t.Fatalf("re-read report: %v", rep2)
	}
	equalTables(t, again, tab)
}

// fixCRCs recomputes the CRCs of the headers at LBA 1 and at the last LBA
// of m, whatever their other fields say.
func fixCRCs(m memDisk, ss int) {
	if len(m) < 3*ss {
		return
	}
	for _, at := range []int{ss, len(m)/ss*ss - ss} {
		h := m[at : at+ss]
		lba := binary.LittleEndian.Uint64(h[72:])
		n, size := uint64(binary.LittleEndian.Uint32(h[80:])), uint64(binary.LittleEndian.Uint32(h[84:]))
		if lba < uint64(len(m)/ss) && n*size <= uint64(len(m)) && lba*uint64(ss)+n*size <= uint64(len(m)) {
			off := lba * uint64(ss)
			binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(m[off:off+n*size]))
		}
		hs := int(binary.LittleEndian.Uint32(h[12:]))
		if hs >= 92 && hs <= ss {
			binary.LittleEndian.PutUint32(h[16:], 0)
			binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:hs]))
		}
	}
}
