package payload

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
)

// BenchmarkOpDuration measures what timing every operation
// (Options.OpDuration, the daemon's operation_duration_seconds) costs an
// apply: a 32 MiB uncompressed payload in 64 KiB operations (32× more
// operations per byte than the generator's 2 MiB, so the per-operation
// cost shows), applied to a target that drops writes, with and without
// the callback, interleaved, 9 rounds; it prints the ratio of the medians.
func BenchmarkOpDuration(b *testing.B) {
	img := testImage(32<<20, 9)
	p := generate(b, img, GenerateOptions{Compression: CompressNone, ChunkSize: 64 << 10})
	run := func(o Options) time.Duration {
		start := time.Now()
		if _, err := Apply(context.Background(), bytes.NewReader(p), discardTarget{}, o); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var without, with []time.Duration
	seen := map[string]time.Duration{}
	for range 9 {
		without = append(without, run(Options{}))
		with = append(with, run(Options{OpDuration: func(t string, d time.Duration) { seen[t] += d }}))
	}
	slices.Sort(without)
	slices.Sort(with)
	testenv.Bench(b, "apply_64KiB_ops_with_op_timing_vs_without", float64(with[4])/float64(without[4]), "x")
	testenv.Bench(b, "apply_64KiB_ops_without_op_timing", float64(len(img))/without[4].Seconds()/(1<<20), "MiB/s")
}

// discardTarget drops writes.
type discardTarget struct{}

func (discardTarget) WriteAt(b []byte, _ int64) (int, error) { return len(b), nil }
