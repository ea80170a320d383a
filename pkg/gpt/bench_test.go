package gpt_test

import (
	"os"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/gpt"
)

// BenchmarkUpdate times a flip (Disk.Update: read, validate, both copies
// written, two fsyncs) on an image file, against the floor: the same four
// writes and two fsyncs issued directly on the same file.
func BenchmarkUpdate(b *testing.B) {
	const rounds = 20
	img := newImage(b, abTable(b, 32<<20, 512))
	d, err := gpt.Open(img, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	var ours, floor time.Duration
	for b.Loop() {
		start := time.Now()
		for i := range rounds {
			if _, err := d.Update(func(t *gpt.Table) error { return t.Entries[3].SetTries(i % 16) }); err != nil {
				b.Fatal(err)
			}
		}
		ours = time.Since(start)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	array, sector := make([]byte, 16384), make([]byte, 512)
	start := time.Now()
	for range rounds {
		for _, w := range []struct {
			b   []byte
			off int64
		}{{array, 32<<20 - 33*512}, {sector, 32<<20 - 512}, {nil, 0}, {array, 1024}, {sector, 512}, {nil, 0}} {
			if w.b == nil {
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				continue
			}
			if _, err := f.ReadAt(w.b, w.off); err != nil { // write back what is there
				b.Fatal(err)
			}
			if _, err := f.WriteAt(w.b, w.off); err != nil {
				b.Fatal(err)
			}
		}
	}
	floor = time.Since(start)
	testenv.Bench(b, "gpt_update_ms", float64(ours.Microseconds())/1000/rounds, "ms")
	testenv.Bench(b, "gpt_update_vs_raw_synced_writes", floor.Seconds()/ours.Seconds(), "ratio")
}
