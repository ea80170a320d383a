package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"
)

type memTarget struct{ b []byte }

func (m *memTarget) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memTarget) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, nil
	}
	return copy(p, m.b[off:]), nil
}

func seedPayloads(f *testing.F) [][]byte {
	// No signed seed: RSA key generation under fuzzing instrumentation
	// takes most of the fuzz time.
	img := testImage(40<<10, 10)
	return [][]byte{
		generate(f, img, GenerateOptions{ChunkSize: 8 << 10, Compression: CompressNone}),
		generate(f, img, GenerateOptions{ChunkSize: 8 << 10}),
		generate(f, img, GenerateOptions{ChunkSize: 16 << 10, Compression: CompressZstd}),
		generate(f, img, GenerateOptions{Major: 1, ChunkSize: 16 << 10}),
	}
}

func FuzzReadMetadata(f *testing.F) {
	for _, p := range seedPayloads(f) {
		f.Add(p[:min(len(p), 2048)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadMetadata(bytes.NewReader(b))
		if err != nil {
			return
		}
		if uint64(len(m.Raw)) != m.DataStart() || !bytes.Equal(m.Raw, b[:len(m.Raw)]) {
			t.Fatalf("Raw is not the payload front")
		}
		newPlan(m, &Options{})
	})
}

func FuzzApply(f *testing.F) {
	for _, p := range seedPayloads(f) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var tgt memTarget
		res, err := Apply(context.Background(), bytes.NewReader(b), &tgt, Options{TargetSize: 1 << 20, Workers: 2})
		if err != nil {
			return
		}
		sum := sha256.Sum256(b)
		if res.Size != int64(len(b)) || !bytes.Equal(res.SHA256, sum[:]) {
			t.Fatalf("success with size %d sha %x for %d bytes %x", res.Size, res.SHA256, len(b), sum)
		}
		if res.PartitionHash != nil {
			got := sha256.Sum256(tgt.b[:res.PartitionSize])
			if !bytes.Equal(got[:], res.PartitionHash) {
				t.Fatal("success with a partition that does not match its hash")
			}
		}
	})
}
