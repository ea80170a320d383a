package slot_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/testenv"
)

const (
	guidA = "7130c94a-213a-4e5a-8e26-6cce9662f132"
	guidB = "e03dd35c-7c2d-4a47-b3fe-27f15780a57c"
)

func TestBootedSlot(t *testing.T) {
	ctx := t.Context()
	img := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: 1 << 20})
	tests := []struct {
		name    string
		opts    slot.Options
		want    string
		wantErr error
	}{
		{name: "usr PARTUUID", opts: slot.Options{Cmdline: "ro usr=PARTUUID=" + guidA + " quiet"}, want: "A"},
		{name: "mount.usr PARTUUID", opts: slot.Options{Cmdline: "mount.usr=PARTUUID=" + strings.ToUpper(guidB)}, want: "B"},
		{name: "flatcar verity", opts: slot.Options{Cmdline: "mount.usr=/dev/mapper/usr verity.usr=PARTUUID=" + guidB + " root=LABEL=ROOT"}, want: "B"},
		{name: "root PARTUUID", opts: slot.Options{Cmdline: "root=PARTUUID=" + guidB}, want: "B"},
		{name: "usr before root", opts: slot.Options{Cmdline: "root=PARTUUID=" + guidB + " usr=PARTUUID=" + guidA}, want: "A"},
		{name: "PARTLABEL", opts: slot.Options{Cmdline: "mount.usr=PARTLABEL=USR-B"}, want: "B"},
		{name: "by-partuuid", opts: slot.Options{Cmdline: "mount.usr=/dev/disk/by-partuuid/" + guidA}, want: "A"},
		{name: "quoted", opts: slot.Options{Cmdline: `usr="PARTUUID=` + guidB + `"`}, want: "B"},
		{name: "after --", opts: slot.Options{Cmdline: "quiet -- usr=PARTUUID=" + guidA}, wantErr: slot.ErrBootedUnknown},
		{name: "host cmdline", opts: slot.Options{Cmdline: "console=ttyS0 quiet"}, wantErr: slot.ErrBootedUnknown},
		{name: "other disk's node", opts: slot.Options{Cmdline: "root=/dev/sda3"}, wantErr: slot.ErrBootedUnknown},
		{name: "unknown uuid", opts: slot.Options{Cmdline: "usr=PARTUUID=00000000-0000-4000-8000-000000000000"}, wantErr: slot.ErrBootedUnknown},
		{name: "option B", opts: slot.Options{Booted: "b", Cmdline: "usr=PARTUUID=" + guidA}, want: "B"},
		{name: "option label", opts: slot.Options{Booted: "USR-A"}, want: "A"},
		{name: "option index", opts: slot.Options{Booted: "4"}, want: "B"},
		{name: "option PARTUUID", opts: slot.Options{Booted: "PARTUUID=" + guidA}, want: "A"},
		{name: "option guid", opts: slot.Options{Booted: guidB}, want: "B"},
		{name: "option C", opts: slot.Options{Booted: "C"}, wantErr: slot.ErrBootedUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := slot.Open(ctx, img, tt.opts)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if d.Booted() != tt.want {
				t.Fatalf("booted %s, want %s", d.Booted(), tt.want)
			}
			if d.Passive() == d.Booted() || d.PassiveSlot().Index != map[string]int{"A": 4, "B": 3}[tt.want] {
				t.Fatalf("passive %v", d.PassiveSlot())
			}
		})
	}
}

func TestNoSlots(t *testing.T) {
	img := t.TempDir() + "/x.img"
	testenv.RequireTool(t, "sgdisk")
	if err := os.WriteFile(img, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd("sgdisk", "-o", "-n", "1:0:+1M", "-t", "1:5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6", img); err != nil {
		t.Fatal(err, out)
	}
	if _, err := slot.Open(t.Context(), img, slot.Options{Booted: "A"}); !errors.Is(err, slot.ErrNoSlots) {
		t.Fatalf("one usr partition: err = %v", err)
	}
	if _, _, err := slot.List(img); !errors.Is(err, slot.ErrNoSlots) {
		t.Fatalf("List: err = %v", err)
	}
}

// pattern fills n bytes with a recognizable sequence.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) ^ seed
	}
	return b
}

func TestActiveAndPassive(t *testing.T) {
	for _, layout := range []testenv.Layout{testenv.LayoutFlatcar, testenv.LayoutSimple} {
		t.Run(string(layout), func(t *testing.T) {
			img := testenv.NewDisk(t, testenv.DiskSpec{Layout: layout, SlotSize: 1 << 20})
			d, err := slot.Open(t.Context(), img, slot.Options{Booted: "A"})
			if err != nil {
				t.Fatal(err)
			}
			checkActivePassive(t, d, img)
		})
	}
}

// checkActivePassive writes the passive slot through its Writer and checks
// the bytes land exactly there, that writes outside are refused, and that
// the active slot reads what is on disk.
func checkActivePassive(t *testing.T, d *slot.Disk, raw string) {
	t.Helper()
	ctx := t.Context()
	a, p := d.BootedSlot(), d.PassiveSlot()
	before, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	// The active slot content, put there behind the package's back.
	f, err := os.OpenFile(raw, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(pattern(int(a.Size), 0x5a), a.Start); err != nil {
		t.Fatal(err)
	}
	f.Close()

	r, c, err := d.Active()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.(io.WriterAt); ok {
		t.Fatal("active slot reader is writable")
	}
	if sr, ok := r.(*io.SectionReader); !ok || sr.Size() != a.Size {
		t.Fatalf("active reader %T without the slot size", r)
	}
	got := make([]byte, a.Size)
	if _, err := r.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pattern(int(a.Size), 0x5a)) {
		t.Fatal("active slot reads other bytes than are on disk")
	}
	if n, err := r.ReadAt(make([]byte, 10), a.Size-5); n != 5 || err != io.EOF {
		t.Fatalf("read past the slot end: %d, %v", n, err)
	}
	c.Close()

	w, err := d.OpenPassive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Size() != p.Size {
		t.Fatalf("writer size %d, slot %d", w.Size(), p.Size)
	}
	data := slot.AlignedBuffer(int(p.Size))
	copy(data, pattern(int(p.Size), 0xa5))
	bounds := []struct {
		name    string
		off     int64
		n       int
		wantErr bool
	}{
		{"whole", 0, int(p.Size), false},
		{"last block", p.Size - 4096, 4096, false},
		{"one past end", p.Size - 4096, 4096 + 1, true},
		{"at end", p.Size, 1, true},
		{"negative", -4096, 4096, true},
		{"huge offset", 1 << 62, 4096, true},
		{"empty at end", p.Size, 0, false},
	}
	for _, b := range bounds {
		buf := data[:b.n]
		if b.off >= 0 && b.off < p.Size {
			buf = data[b.off : b.off+int64(min(int64(b.n), p.Size-b.off))]
			if b.n > len(buf) {
				buf = append(append([]byte(nil), buf...), make([]byte, b.n-len(buf))...)
			}
		}
		n, err := w.WriteAt(buf, b.off)
		if b.wantErr != (err != nil) || (err != nil && (!errors.Is(err, slot.ErrOutOfRange) || n != 0)) {
			t.Fatalf("%s: n=%d err=%v", b.name, n, err)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after[p.Start:p.Start+p.Size], data) {
		t.Fatal("passive slot does not hold what was written")
	}
	// Nothing outside the passive slot changed except the active pattern.
	copy(before[a.Start:], pattern(int(a.Size), 0x5a))
	copy(before[p.Start:], data)
	if !bytes.Equal(before, after) {
		t.Fatal("bytes outside the passive slot changed")
	}
	pr, pc, err := d.OpenPassiveReader()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	back := make([]byte, 4096)
	if _, err := pr.ReadAt(back, 0); err != nil || !bytes.Equal(back, data[:4096]) {
		t.Fatalf("passive reader: %v", err)
	}
	// The writer reads its own slot back, bounded like its writes.
	if _, err := w.ReadAt(back, p.Size-4096); err != nil || !bytes.Equal(back, data[p.Size-4096:]) {
		t.Fatalf("writer read-back of the last block: %v", err)
	}
	if n, err := w.ReadAt(make([]byte, 8192), p.Size-4096); n != 4096 || err != io.EOF {
		t.Fatalf("read across the end: n=%d err=%v, want 4096, EOF", n, err)
	}
	if _, err := w.ReadAt(back, p.Size+4096); !errors.Is(err, slot.ErrOutOfRange) {
		t.Fatalf("read past the end: %v, want ErrOutOfRange", err)
	}
}

func TestDirectFallback(t *testing.T) {
	// The temp dir may or may not support O_DIRECT; either way the writer
	// works and says which it got.
	img := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: 1 << 20})
	d, err := slot.Open(t.Context(), img, slot.Options{Booted: "A", Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := d.OpenPassive(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	buf := slot.AlignedBuffer(8192)
	copy(buf, "hello")
	if n, err := w.WriteAt(buf, 4096); err != nil || n != 8192 {
		t.Fatalf("direct=%v: %d %v", w.Direct(), n, err)
	}
	w.Close()
	t.Logf("O_DIRECT on %s: %v", img, w.Direct())
	if uintptr(len(slot.AlignedBuffer(100))) != 100 {
		t.Fatal("AlignedBuffer length")
	}
	// tmpfs (/dev/shm) refuses O_DIRECT on older kernels: the writer must
	// still open, buffered.
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		shm, err := os.MkdirTemp("/dev/shm", "slot")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(shm)
		img := shm + "/d.img"
		if err := testenv.CreateDisk(img, testenv.DiskSpec{SlotSize: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		d, err := slot.Open(t.Context(), img, slot.Options{Booted: "B", Direct: true})
		if err != nil {
			t.Fatal(err)
		}
		w, err := d.OpenPassive(t.Context())
		if err != nil {
			t.Fatalf("tmpfs: %v", err)
		}
		if _, err := w.WriteAt(buf, 0); err != nil {
			t.Fatalf("tmpfs direct=%v: %v", w.Direct(), err)
		}
		w.Close()
		t.Logf("O_DIRECT on tmpfs: %v", w.Direct())
	}
}
