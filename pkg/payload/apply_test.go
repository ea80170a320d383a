package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/payload/metadata"
	"google.golang.org/protobuf/proto"
)

func TestRoundTrip(t *testing.T) {
	img := testImage(3<<20+5000, 1) // not a multiple of the block size
	k := keys(t, 2)
	tests := []struct {
		name    string
		gen     GenerateOptions
		opts    Options
		wantOps []metadata.InstallOperation_Type
	}{
		{"v2 xz signed", GenerateOptions{Keys: k[:1], ChunkSize: 256 << 10}, Options{Keys: pubs(k[0])},
			[]metadata.InstallOperation_Type{OpReplaceXZ}},
		{"v2 zstd", GenerateOptions{Keys: k[:1], Compression: CompressZstd, ChunkSize: 128 << 10}, Options{Keys: pubs(k[0])},
			[]metadata.InstallOperation_Type{OpReplaceZstd, OpZero}},
		{"v2 none", GenerateOptions{Compression: CompressNone}, Options{},
			[]metadata.InstallOperation_Type{OpReplace}},
		{"v2 unsigned, no key", GenerateOptions{ChunkSize: 64 << 10}, Options{}, nil},
		{"v2 two keys, verify with new", GenerateOptions{Keys: k, ChunkSize: 512 << 10}, Options{Keys: pubs(k[1])}, nil},
		{"v2 two keys, verify with old", GenerateOptions{Keys: k, ChunkSize: 512 << 10}, Options{Keys: pubs(k[0])}, nil},
		{"v2 named partition", GenerateOptions{Keys: k[:1], Partition: "usr"}, Options{Keys: pubs(k[0]), Partition: "usr"}, nil},
		{"v1 signed", GenerateOptions{Major: 1, Keys: k[:1], ChunkSize: 1 << 20}, Options{Keys: pubs(k[0])},
			[]metadata.InstallOperation_Type{OpReplaceBZ}},
		{"v1 none", GenerateOptions{Major: 1, Keys: k[:1], Compression: CompressNone, ChunkSize: 1 << 20}, Options{Keys: pubs(k[0])},
			[]metadata.InstallOperation_Type{OpReplace}},
		{"v2 bzip2", GenerateOptions{Keys: k[:1], Compression: CompressBzip2, ChunkSize: 256 << 10}, Options{Keys: pubs(k[0])},
			[]metadata.InstallOperation_Type{OpReplaceBZ}},
		{"one worker, tiny budget", GenerateOptions{Keys: k[:1], ChunkSize: 128 << 10}, Options{Keys: pubs(k[0]), Workers: 1, MemoryBudget: 1}, nil},
		{"direct", GenerateOptions{Keys: k[:1]}, Options{Keys: pubs(k[0]), Direct: true}, nil},
		{"checkpoint every 1 MiB", GenerateOptions{Keys: k[:1], ChunkSize: 64 << 10}, Options{Keys: pubs(k[0]), CheckpointBytes: 1 << 20,
			Checkpoint: func(*Checkpoint) error { return nil }}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := generate(t, img, tc.gen)
			m, err := ReadMetadata(bytes.NewReader(p))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.wantOps {
				found := false
				for _, op := range m.Partitions[0].Ops {
					found = found || op.GetType() == want
				}
				if !found {
					t.Errorf("no %v op in payload", want)
				}
			}
			f := targetFile(t, 0)
			var target io.WriterAt = f
			if tc.opts.Direct {
				target = &alignChecker{t: t, f: f}
			}
			res, err := Apply(context.Background(), bytes.NewReader(p), target, tc.opts)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if got := readAll(t, f, len(img)); !bytes.Equal(got, img) {
				t.Fatal("target differs from the image")
			}
			sum := sha256.Sum256(p)
			if res.Size != int64(len(p)) || !bytes.Equal(res.SHA256, sum[:]) {
				t.Errorf("result size %d sha %x, want %d %x", res.Size, res.SHA256, len(p), sum)
			}
			if res.PartitionSize != uint64(len(img)) {
				t.Errorf("partition size %d, want %d", res.PartitionSize, len(img))
			}
		})
	}
}

// alignChecker fails the test on any write that O_DIRECT would refuse.
type alignChecker struct {
	t testing.TB
	f io.WriterAt
}

func (a *alignChecker) WriteAt(b []byte, off int64) (int, error) {
	if off%4096 != 0 || len(b)%4096 != 0 || (len(b) > 0 && addr(b)%4096 != 0) {
		a.t.Errorf("unaligned write: off %d len %d addr %#x", off, len(b), addr(b))
	}
	return a.f.WriteAt(b, off)
}

func TestGenerateDeterministic(t *testing.T) {
	img := testImage(1<<20, 2)
	k := keys(t, 1)
	a := generate(t, img, GenerateOptions{Keys: k, ChunkSize: 64 << 10, Workers: 1})
	b := generate(t, img, GenerateOptions{Keys: k, ChunkSize: 64 << 10, Workers: 3})
	if !bytes.Equal(a, b) {
		t.Fatal("two generations of the same image differ")
	}
}

func TestV1ReplaceBZ(t *testing.T) {
	testenv.RequireTool(t, "bzip2")
	img := testImage(300<<10, 3)
	bs := 4096
	var ops []*metadata.InstallOperation
	var data [][]byte
	for off, i := 0, 0; off < len(img); i++ {
		n := min(len(img)-off, 64<<10)
		chunk := img[off : off+n]
		typ := OpReplace
		d := chunk
		if i%2 == 0 {
			cmd := exec.Command("bzip2", "-c", "-9")
			cmd.Stdin = bytes.NewReader(chunk)
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			typ, d = OpReplaceBZ, out
		}
		ops = append(ops, &metadata.InstallOperation{Type: typ.Enum(),
			DstExtents: ext(uint64(off/bs), uint64((n+bs-1)/bs))})
		data = append(data, d)
		off += n
	}
	k := keys(t, 1)
	p := writeOps(t, &Spec{Major: 1, Ops: ops, NewInfo: info(img)}, data, k)
	f := targetFile(t, 0)
	if _, err := Apply(context.Background(), bytes.NewReader(p), f, Options{Keys: pubs(k[0])}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, f, len(img)), img) {
		t.Fatal("target differs")
	}
	m, err := ReadMetadata(bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(m.Flatcar.NoopOperations); n != 1 || m.Flatcar.NoopOperations[0].DstExtents[0].GetStartBlock() != SparseHole {
		t.Errorf("v1 signed payload: want one noop op into a hole, got %v", m.Flatcar.NoopOperations)
	}
}

func TestSourceCopy(t *testing.T) {
	old := testImage(1<<20, 4)
	img := append([]byte(nil), old...)
	copy(img[300<<10:], bytes.Repeat([]byte("changed"), 1000))
	k := keys(t, 1)
	p := generate(t, img, GenerateOptions{Old: bytes.NewReader(old), OldSize: int64(len(old)), Keys: k, ChunkSize: 64 << 10})
	m, err := ReadMetadata(bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	copies := 0
	for _, op := range m.Partitions[0].Ops {
		if op.GetType() == OpSourceCopy {
			copies++
		}
	}
	if copies < 3 || m.MinorVersion == 0 { // 256 KiB ones (copyScale)
		t.Fatalf("want a delta with SOURCE_COPY ops, got %d copies, minor %d", copies, m.MinorVersion)
	}
	tests := []struct {
		name    string
		src     []byte
		wantErr error
	}{
		{"right source", old, nil},
		{"no source", nil, ErrNoSource},
		{"wrong source", testImage(1<<20, 5), ErrSourceMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Keys: pubs(k[0])}
			if tc.src != nil {
				o.Source = bytes.NewReader(tc.src)
			}
			f := targetFile(t, 0)
			_, err := Apply(context.Background(), bytes.NewReader(p), f, o)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err == nil && !bytes.Equal(readAll(t, f, len(img)), img) {
				t.Fatal("target differs")
			}
		})
	}
}

func TestSignatureRules(t *testing.T) {
	img := testImage(200<<10, 6)
	k := keys(t, 3)
	signed := generate(t, img, GenerateOptions{Keys: k[:2], ChunkSize: 64 << 10})
	unsigned := generate(t, img, GenerateOptions{ChunkSize: 64 << 10})
	v1unsigned := generate(t, img, GenerateOptions{Major: 1})
	v1signed := generate(t, img, GenerateOptions{Major: 1, Keys: k[:1]})
	zstd := generate(t, img, GenerateOptions{Compression: CompressZstd})
	tests := []struct {
		name    string
		p       []byte
		opts    Options
		wantErr error
	}{
		{"rotated: old key", signed, Options{Keys: pubs(k[0])}, nil},
		{"rotated: new key", signed, Options{Keys: pubs(k[1])}, nil},
		{"rotated: unknown key", signed, Options{Keys: pubs(k[2])}, ErrMetadataSignatureMismatch},
		{"unknown + known key", signed, Options{Keys: pubs(k[2], k[1])}, nil},
		{"v2 unsigned with key", unsigned, Options{Keys: pubs(k[0])}, ErrMetadataSignatureMissing},
		{"v1 unsigned with key", v1unsigned, Options{Keys: pubs(k[0])}, ErrSignatureMissing},
		{"v1 unknown key", v1signed, Options{Keys: pubs(k[2])}, ErrSignatureMismatch},
		{"zstd strict", zstd, Options{Strict: true}, ErrUnknownOperation},
		{"zstd lax", zstd, Options{}, nil},
		{"missing partition", signed, Options{Partition: "kernel"}, ErrInvalidManifest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := targetFile(t, 0)
			_, err := Apply(context.Background(), bytes.NewReader(tc.p), f, tc.opts)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil && tc.wantErr != ErrSignatureMismatch {
				if st, _ := f.Stat(); st.Size() != 0 {
					t.Errorf("target written (%d bytes) despite %v", st.Size(), err)
				}
			}
		})
	}
}

// TestValidation: impossible manifests fail before anything is written.
func TestValidation(t *testing.T) {
	blk := bytes.Repeat([]byte{7}, 4096)
	rep := func(start, n uint64) *metadata.InstallOperation {
		return &metadata.InstallOperation{Type: OpReplace.Enum(), DstExtents: ext(start, n)}
	}
	tests := []struct {
		name    string
		ops     []*metadata.InstallOperation
		data    [][]byte
		opts    Options
		wantErr error
	}{
		{"ok", []*metadata.InstallOperation{rep(0, 1), rep(1, 1)}, [][]byte{blk, blk}, Options{}, nil},
		{"unknown type", []*metadata.InstallOperation{{Type: metadata.InstallOperation_Type(99).Enum(), DstExtents: ext(0, 1)}}, nil, Options{}, ErrUnknownOperation},
		{"unsupported type", []*metadata.InstallOperation{{Type: metadata.InstallOperation_ZUCCHINI.Enum(), DstExtents: ext(0, 1)}}, [][]byte{blk}, Options{}, ErrUnknownOperation},
		{"out of partition", []*metadata.InstallOperation{rep(0, 1), rep(8, 1)}, [][]byte{blk, blk}, Options{TargetSize: 8 * 4096}, ErrInvalidManifest},
		{"overlap", []*metadata.InstallOperation{rep(0, 2), rep(1, 1)}, [][]byte{append(blk, blk...), blk}, Options{}, ErrInvalidManifest},
		{"not sequential", []*metadata.InstallOperation{rep(0, 1), {Type: OpReplace.Enum(), DstExtents: ext(1, 1), DataOffset: proto.Uint64(1)}}, [][]byte{blk, blk}, Options{}, ErrInvalidManifest},
		{"data longer than extents", []*metadata.InstallOperation{rep(0, 1)}, [][]byte{append(blk, 1)}, Options{}, ErrInvalidManifest},
		{"data a block short", []*metadata.InstallOperation{rep(0, 2)}, [][]byte{blk}, Options{}, ErrInvalidManifest},
		{"hash missing", []*metadata.InstallOperation{{Type: OpReplace.Enum(), DstExtents: ext(0, 1), DataSha256Hash: []byte{}}}, [][]byte{blk}, Options{}, ErrOperationHashMissing},
		{"zero with data", []*metadata.InstallOperation{{Type: OpZero.Enum(), DstExtents: ext(0, 1)}}, [][]byte{blk}, Options{}, ErrInvalidManifest},
		{"no extents", []*metadata.InstallOperation{{Type: OpZero.Enum()}}, nil, Options{}, ErrInvalidManifest},
		{"source op without source", []*metadata.InstallOperation{{Type: OpSourceCopy.Enum(), DstExtents: ext(0, 1), SrcExtents: ext(0, 1)}}, nil, Options{}, ErrNoSource},
		{"xz decodes too much", []*metadata.InstallOperation{rep(0, 1), {Type: OpReplaceXZ.Enum(), DstExtents: ext(1, 1)}}, [][]byte{blk, xzOf(t, append(blk, blk...))}, Options{}, ErrOperationExecution},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeOps(t, &Spec{Ops: tc.ops}, tc.data, nil)
			f := targetFile(t, 0)
			_, err := Apply(context.Background(), bytes.NewReader(p), f, tc.opts)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			st, _ := f.Stat()
			if tc.wantErr == ErrOperationExecution {
				if st.Size() != 4096 {
					t.Errorf("target has %d bytes, want only the first op's 4096", st.Size())
				}
			} else if tc.wantErr != nil && st.Size() != 0 {
				t.Errorf("target written (%d bytes) despite %v", st.Size(), err)
			}
		})
	}
}

func xzOf(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	if err := compressXZ(context.Background(), &buf, b, len(b), ""); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestResume interrupts an apply after every checkpoint and resumes it in a
// fresh applier from the JSON-serialized checkpoint.
func TestResume(t *testing.T) {
	img := testImage(1<<20, 7)
	k := keys(t, 1)
	p := generate(t, img, GenerateOptions{Keys: k, ChunkSize: 128 << 10})
	o := Options{Keys: pubs(k[0])}
	var cps [][]byte
	o.Checkpoint = func(cp *Checkpoint) error {
		b, err := json.Marshal(cp)
		cps = append(cps, b)
		return err
	}
	full, err := Apply(context.Background(), bytes.NewReader(p), targetFile(t, 0), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) < 8 {
		t.Fatalf("%d checkpoints, want one per op", len(cps))
	}
	errStop := errors.New("stop")
	for i, b := range cps {
		var cp Checkpoint
		if err := json.Unmarshal(b, &cp); err != nil {
			t.Fatal(err)
		}
		f := targetFile(t, 0)
		n := 0
		o1 := Options{Keys: o.Keys, Checkpoint: func(*Checkpoint) error {
			if n == i {
				return errStop
			}
			n++
			return nil
		}}
		if _, err := Apply(context.Background(), bytes.NewReader(p), f, o1); !errors.Is(err, errStop) {
			t.Fatalf("checkpoint %d: interrupted apply: %v", i, err)
		}
		res, err := Resume(context.Background(), &cp, bytes.NewReader(p[cp.Offset:]), f, Options{Keys: o.Keys})
		if err != nil {
			t.Fatalf("checkpoint %d (op %d, offset %d): %v", i, cp.NextOp, cp.Offset, err)
		}
		if !bytes.Equal(res.SHA256, full.SHA256) || res.Size != full.Size {
			t.Fatalf("checkpoint %d: result %x/%d, want %x/%d", i, res.SHA256, res.Size, full.SHA256, full.Size)
		}
		if !bytes.Equal(readAll(t, f, len(img)), img) {
			t.Fatalf("checkpoint %d: target differs", i)
		}
	}
	t.Run("bad offset", func(t *testing.T) {
		var cp Checkpoint
		json.Unmarshal(cps[2], &cp)
		cp.Offset++
		if _, err := Resume(context.Background(), &cp, bytes.NewReader(p[cp.Offset:]), targetFile(t, 0), o); !errors.Is(err, ErrBadCheckpoint) {
			t.Fatalf("err %v, want ErrBadCheckpoint", err)
		}
	})
	t.Run("tampered after checkpoint", func(t *testing.T) {
		var cp Checkpoint
		json.Unmarshal(cps[2], &cp)
		q := append([]byte(nil), p...)
		q[len(q)-1] ^= 1 // payload signature
		if _, err := Resume(context.Background(), &cp, bytes.NewReader(q[cp.Offset:]), targetFile(t, 0), Options{Keys: o.Keys}); !errors.Is(err, ErrSignatureMismatch) {
			t.Fatalf("err %v, want ErrSignatureMismatch", err)
		}
	})
}

func TestCancel(t *testing.T) {
	img := testImage(1<<20, 8)
	p := generate(t, img, GenerateOptions{ChunkSize: 64 << 10, Compression: CompressNone})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var last int64
	f := targetFile(t, 0)
	_, err := Apply(ctx, bytes.NewReader(p), f, Options{Progress: func(n int64) {
		if last == 0 {
			cancel()
		}
		last = n
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	// Progress runs behind the writer by the queue depth at most.
	if st, _ := f.Stat(); st.Size() >= int64(len(img)) || st.Size()%(64<<10) != 0 {
		t.Errorf("target has %d bytes after a cancel after op 0, want whole ops and fewer than all", st.Size())
	}
}

// TestWorkerInit: WorkerInit runs once on each decoding goroutine, before
// it decodes; MemoryLimit once, with the run's limit.
func TestWorkerInit(t *testing.T) {
	img := testImage(1<<20, 7)
	p := generate(t, img, GenerateOptions{ChunkSize: 64 << 10})
	var calls atomic.Int32
	var limits []int64
	tgt := targetFile(t, len(img))
	_, err := Apply(t.Context(), bytes.NewReader(p), tgt, Options{Workers: 3, WorkerInit: func() { calls.Add(1) },
		MemoryBudget: 5 << 20, MemoryLimit: func(n int64) { limits = append(limits, n) }})
	if err != nil {
		t.Fatal(err)
	}
	if got := calls.Load(); got != 3 {
		t.Fatalf("WorkerInit ran %d times, want once per worker (3)", got)
	}
	// The zeros (1 MiB), the budget and the process's room.
	if want := int64(1<<20 + 5<<20 + processRoom); len(limits) != 1 || limits[0] != want {
		t.Fatalf("MemoryLimit got %v, want once %d", limits, want)
	}
	if !bytes.Equal(readAll(t, tgt, len(img)), img) {
		t.Fatal("target differs")
	}
}

// TestV1Bzip2Blobs checks each REPLACE_BZ blob of a v1 payload with the
// real bzip2 tool (what Flatcar's client links, libbz2, reads), and that
// v1 refuses the compressions its clients do not know.
func TestV1Bzip2Blobs(t *testing.T) {
	testenv.RequireTool(t, "bzip2")
	img := testImage(3<<20, 9)
	p := generate(t, img, GenerateOptions{Major: 1, ChunkSize: 512 << 10})
	m, err := ReadMetadata(bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	bz := 0
	for i, op := range m.Partitions[0].Ops {
		data := p[m.DataStart()+op.GetDataOffset():][:op.GetDataLength()]
		want := img[op.DstExtents[0].GetStartBlock()*4096:][:op.DstExtents[0].GetNumBlocks()*4096]
		switch op.GetType() {
		case OpReplaceBZ:
			bz++
			cmd := exec.Command("bzip2", "-dc")
			cmd.Stdin = bytes.NewReader(data)
			got, err := cmd.Output()
			if err != nil {
				t.Fatalf("op %d: bzip2 -dc: %v", i, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("op %d: bzip2 -dc gives %d bytes, not the image's", i, len(got))
			}
		case OpReplace:
			if !bytes.Equal(data, want) {
				t.Fatalf("op %d: REPLACE data is not the image's", i)
			}
		default:
			t.Fatalf("op %d: %v in a v1 payload", i, op.GetType())
		}
	}
	if bz == 0 {
		t.Fatal("no REPLACE_BZ op for a compressible image")
	}
	if len(p) >= len(img)*9/10 {
		t.Errorf("v1 payload is %d bytes for a %d-byte image: not compressed", len(p), len(img))
	}
	for _, c := range []string{CompressXZ, CompressZstd} {
		_, err := Generate(context.Background(), io.Discard, GenerateOptions{Major: 1, Compression: c,
			New: bytes.NewReader(img), NewSize: int64(len(img)), TempDir: t.TempDir()})
		if !errors.Is(err, ErrGenerate) {
			t.Errorf("v1 with %s: %v, want ErrGenerate", c, err)
		}
	}
}

// TestXZCommand: REPLACE_XZ data made by the xz program (liblzma) applies
// like the built-in encoder's, is smaller, and a missing program is a
// clear error; for full and delta payloads.
func TestXZCommand(t *testing.T) {
	testenv.RequireTool(t, "xz")
	img := testImage(4<<20, 12)
	k := keys(t, 1)
	builtin := generate(t, img, GenerateOptions{Keys: k})
	liblzma := generate(t, img, GenerateOptions{Keys: k, XZCommand: "xz"})
	if len(liblzma) >= len(builtin) {
		t.Errorf("xz program payload %d bytes, built-in %d: not smaller", len(liblzma), len(builtin))
	}
	t.Logf("payload: built-in encoder %d bytes, xz program %d (%.2fx)", len(builtin), len(liblzma), float64(len(liblzma))/float64(len(builtin)))
	f := targetFile(t, len(img))
	if _, err := Apply(context.Background(), bytes.NewReader(liblzma), f, Options{Keys: pubs(k[0])}); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, f, len(img)); !bytes.Equal(got, img) {
		t.Fatal("target differs from the image")
	}
	counts, _ := opCounts(t, liblzma)
	if counts[OpReplaceXZ] == 0 {
		t.Fatalf("no REPLACE_XZ op: %v", counts)
	}

	r := rand.New(rand.NewPCG(12, 1))
	newImg := mutate(img, r, 300)
	delta, _ := genDelta(t, img, newImg, GenerateOptions{Keys: k, XZCommand: "xz"})
	got, err := applyDelta(t, delta, img, len(newImg), len(newImg), Options{Keys: pubs(k[0])})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, newImg) {
		t.Fatal("delta target differs from the new image")
	}

	_, err = Generate(context.Background(), io.Discard, GenerateOptions{XZCommand: "no-such-xz-program",
		New: bytes.NewReader(img), NewSize: int64(len(img)), TempDir: t.TempDir()})
	if !errors.Is(err, ErrGenerate) || !strings.Contains(err.Error(), "no-such-xz-program") {
		t.Errorf("missing program: %v, want ErrGenerate naming it", err)
	}
	// A program whose output is valid xz of the wrong bytes (it drops one
	// byte of its input) is caught at generation, not on the hosts.
	bad := filepath.Join(t.TempDir(), "bad-xz")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\nhead -c -1 | xz \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = Generate(context.Background(), io.Discard, GenerateOptions{XZCommand: bad,
		New: bytes.NewReader(img), NewSize: int64(len(img)), TempDir: t.TempDir()})
	if !errors.Is(err, ErrGenerate) || !strings.Contains(err.Error(), "does not decode to its input") {
		t.Errorf("lossy program: %v, want ErrGenerate saying its output is wrong", err)
	}
}

// TestFullPayloadOps: a full payload in a standard compression is minor
// version 0 with REPLACE-family operations only, as the reference
// generator writes and its checker (AOSP paycheck) demands; ZERO appears
// only in the REPLACE_ZSTD extension.
func TestFullPayloadOps(t *testing.T) {
	img := testImage(2<<20, 13)
	clear(img[512<<10 : 1<<20]) // a zero chunk
	replaceFamily := []metadata.InstallOperation_Type{OpReplace, OpReplaceBZ, OpReplaceXZ}
	for _, o := range []GenerateOptions{
		{Compression: CompressXZ}, {Compression: CompressBzip2}, {Compression: CompressNone}, {Major: 1},
	} {
		o.ChunkSize = 256 << 10
		counts, m := opCounts(t, generate(t, img, o))
		if m.MinorVersion != 0 {
			t.Errorf("%s/v%d: minor version %d", o.Compression, o.Major, m.MinorVersion)
		}
		for typ, n := range counts {
			if !slices.Contains(replaceFamily, typ) {
				t.Errorf("%s/v%d: %d %v ops in a full payload", o.Compression, o.Major, n, typ)
			}
		}
	}
	if counts, _ := opCounts(t, generate(t, img, GenerateOptions{Compression: CompressZstd, ChunkSize: 256 << 10})); counts[OpZero] == 0 {
		t.Errorf("zstd payload without ZERO for a zero chunk: %v", counts)
	}
}

// TestDefaultChunkSize: without ChunkSize, xz and zstd full payloads cut
// the image into XZChunkSize and ZstdChunkSize operations (each a
// separate stream, so larger is smaller), the others into
// DefaultChunkSize ones; and the applier takes the large ones.
func TestDefaultChunkSize(t *testing.T) {
	img := bytes.Repeat([]byte("compressible text of a filesystem image\n"), (XZChunkSize+3*blockSize)/40)
	img = img[:len(img)/blockSize*blockSize]
	for _, tc := range []struct {
		comp string
		want int
	}{{CompressXZ, XZChunkSize}, {CompressZstd, ZstdChunkSize}, {CompressNone, DefaultChunkSize}, {CompressBzip2, DefaultChunkSize}} {
		p := generate(t, img, GenerateOptions{Compression: tc.comp})
		_, m := opCounts(t, p)
		ops := m.Partitions[0].Ops
		if n := (len(img) + tc.want - 1) / tc.want; len(ops) != n {
			t.Errorf("%s: %d ops for %d bytes, want %d", tc.comp, len(ops), len(img), n)
		}
		if got := ops[0].DstExtents[0].GetNumBlocks() * blockSize; got != uint64(tc.want) {
			t.Errorf("%s: first op of %d bytes, want %d", tc.comp, got, tc.want)
		}
		f := targetFile(t, len(img))
		if _, err := Apply(context.Background(), bytes.NewReader(p), f, Options{}); err != nil {
			t.Fatalf("%s: %v", tc.comp, err)
		}
		if !bytes.Equal(readAll(t, f, len(img)), img) {
			t.Fatalf("%s: target differs from the image", tc.comp)
		}
	}
	_, err := Generate(context.Background(), io.Discard, GenerateOptions{ChunkSize: MaxOpBytes + blockSize,
		New: bytes.NewReader(img), NewSize: int64(len(img)), TempDir: t.TempDir()})
	if !errors.Is(err, ErrGenerate) {
		t.Errorf("chunk size above MaxOpBytes: %v, want ErrGenerate", err)
	}
}
