package payload

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/abupdate/update_engine/pkg/payload/metadata"
	"google.golang.org/protobuf/proto"
)

var (
	keysMu   sync.Mutex // guards testKeys
	testKeys []*rsa.PrivateKey
)

// keys returns n cached 2048-bit test keys.
func keys(t testing.TB, n int) []*rsa.PrivateKey {
	t.Helper()
	keysMu.Lock()
	defer keysMu.Unlock()
	for len(testKeys) < n {
		k, err := rsa.GenerateKey(crand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		testKeys = append(testKeys, k)
	}
	return testKeys[:n]
}

func pubs(ks ...*rsa.PrivateKey) []*rsa.PublicKey {
	var p []*rsa.PublicKey
	for _, k := range ks {
		p = append(p, &k.PublicKey)
	}
	return p
}

// testImage is deterministic: text-like runs, random runs and zero runs of
// a few blocks each, so every operation type is chosen somewhere.
func testImage(size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, size)
	words := []string{"update ", "engine ", "payload ", "flatcar ", "partition ", "\n"}
	for off := 0; off < size; {
		n := min(size-off, (1+r.IntN(24))*1024)
		switch r.IntN(3) {
		case 0: // compressible
			p := b[off : off+n]
			for i := 0; i < n; {
				i += copy(p[i:], words[r.IntN(len(words))])
			}
		case 1:
			for i := off; i < off+n; i++ {
				b[i] = byte(r.Uint32())
			}
		}
		off += n
	}
	return b
}

// generate builds a payload of img in memory.
func generate(t testing.TB, img []byte, o GenerateOptions) []byte {
	t.Helper()
	o.New, o.NewSize = bytes.NewReader(img), int64(len(img))
	if o.TempDir == "" {
		o.TempDir = t.TempDir()
	}
	var buf bytes.Buffer
	if _, err := Generate(context.Background(), &buf, o); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return buf.Bytes()
}

// targetFile returns an open file in t.TempDir() filled with size bytes of
// 0xEE, the "never written" pattern.
func targetFile(t testing.TB, size int) *os.File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "target"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xEE}, size), 0); err != nil {
		t.Fatal(err)
	}
	return f
}

func readAll(t testing.TB, f *os.File, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// writeOps writes a payload from ops (spec.Ops, then the procedures') and
// their data (offsets and hashes are filled in here unless set).
func writeOps(t testing.TB, spec *Spec, data [][]byte, ks []*rsa.PrivateKey) []byte {
	t.Helper()
	var blobs bytes.Buffer
	var off uint64
	ops := spec.Ops
	for _, pr := range spec.Procedures {
		ops = append(ops[:len(ops):len(ops)], pr.Operations...)
	}
	for i, op := range ops {
		if i < len(data) && len(data[i]) > 0 {
			if op.DataOffset == nil {
				op.DataOffset = proto.Uint64(off)
			}
			if op.DataLength == nil {
				op.DataLength = proto.Uint64(uint64(len(data[i])))
			}
			if op.DataSha256Hash == nil {
				s := sha256.Sum256(data[i])
				op.DataSha256Hash = s[:]
			}
			blobs.Write(data[i])
			off += uint64(len(data[i]))
		}
	}
	var out bytes.Buffer
	if _, err := WritePayload(&out, spec, &blobs, ks); err != nil {
		t.Fatalf("WritePayload: %v", err)
	}
	return out.Bytes()
}

func ext(start, n uint64) []*metadata.Extent {
	return []*metadata.Extent{{StartBlock: proto.Uint64(start), NumBlocks: proto.Uint64(n)}}
}

func info(b []byte) *metadata.PartitionInfo {
	s := sha256.Sum256(b)
	return &metadata.PartitionInfo{Size: proto.Uint64(uint64(len(b))), Hash: s[:]}
}
