package slot_test

import (
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/testenv"
)

// BenchmarkPassiveWrite writes a 128 MiB slot through Writer with O_DIRECT
// in 1 MiB aligned chunks and compares with dd oflag=direct writing as
// much at the same offset of the same image (the best of a run before
// and two after ours, so block allocation and warm-up favour neither).
func BenchmarkPassiveWrite(b *testing.B) {
	testenv.RequireTool(b, "dd")
	const size, chunk = 128 << 20, 1 << 20
	img := testenv.NewDisk(b, testenv.DiskSpec{SlotSize: size})
	d, err := slot.Open(b.Context(), img, slot.Options{Booted: "A", Direct: true})
	if err != nil {
		b.Fatal(err)
	}
	p := d.PassiveSlot()
	buf := slot.AlignedBuffer(chunk)
	for i := range buf {
		buf[i] = byte(i)
	}
	runDD := func() time.Duration {
		start := time.Now()
		out, err := exec.Command("dd", "if=/dev/zero", "of="+img, "bs=1M", "count="+strconv.Itoa(size/chunk),
			"oflag=direct", "conv=notrunc,fsync", "seek="+strconv.FormatInt(p.Start/chunk, 10)).CombinedOutput()
		if err != nil {
			b.Fatalf("dd: %v %s", err, out)
		}
		return time.Since(start)
	}
	dd := runDD()
	var ours time.Duration
	for b.Loop() {
		start := time.Now()
		w, err := d.OpenPassive(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < size; off += chunk {
			if _, err := w.WriteAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Sync(); err != nil {
			b.Fatal(err)
		}
		w.Close()
		ours = time.Since(start)
	}
	dd = min(dd, runDD(), runDD())
	testenv.Bench(b, "slot_passive_write_direct_MBps", float64(size)/(1<<20)/ours.Seconds(), "MB/s")
	testenv.Bench(b, "slot_passive_write_direct_vs_dd", dd.Seconds()/ours.Seconds(), "ratio")
}

// BenchmarkFlip times MarkPassiveForTrial (read, both GPT copies written,
// two fsyncs) on an image file.
func BenchmarkFlip(b *testing.B) {
	img := testenv.NewDisk(b, testenv.DiskSpec{SlotSize: 1 << 20})
	d, err := slot.Open(b.Context(), img, slot.Options{Booted: "A"})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	n := 0
	for b.Loop() {
		if err := d.MarkPassiveForTrial(b.Context()); err != nil {
			b.Fatal(err)
		}
		n++
	}
	testenv.Bench(b, "slot_flip_ms", float64(time.Since(start).Microseconds())/1000/float64(n), "ms")
}
