package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/abupdate/update_engine/pkg/bsdiff"
	"github.com/abupdate/update_engine/pkg/payload/metadata"
	"google.golang.org/protobuf/proto"
)

// genDelta builds a delta payload from old to img in memory.
func genDelta(t testing.TB, old, img []byte, o GenerateOptions) ([]byte, *GenerateResult) {
	t.Helper()
	o.Old, o.OldSize = bytes.NewReader(old), int64(len(old))
	o.New, o.NewSize = bytes.NewReader(img), int64(len(img))
	if o.TempDir == "" {
		o.TempDir = t.TempDir()
	}
	var buf bytes.Buffer
	res, err := GenerateDelta(context.Background(), &buf, o)
	if err != nil {
		t.Fatalf("GenerateDelta: %v", err)
	}
	if res.Size != int64(buf.Len()) || !res.Delta {
		t.Fatalf("result %+v for %d bytes", res, buf.Len())
	}
	return buf.Bytes(), res
}

// applyDelta applies p with src as the source onto a fresh target of
// size bytes and returns the target's first n bytes.
func applyDelta(t testing.TB, p, src []byte, size, n int, o Options) ([]byte, error) {
	t.Helper()
	f := targetFile(t, size)
	if src != nil {
		o.Source = bytes.NewReader(src)
	}
	_, err := Apply(context.Background(), bytes.NewReader(p), f, o)
	return readAll(t, f, n), err
}

// mutate returns a copy of b with edits: a few byte changes, insertions
// and deletions (as a recompiled file differs from its old version).
func mutate(b []byte, r *rand.Rand, edits int) []byte {
	out := append([]byte(nil), b...)
	for range edits {
		if len(out) < 16 {
			break
		}
		at := r.IntN(len(out) - 8)
		switch r.IntN(3) {
		case 0:
			out[at] ^= byte(1 + r.IntN(255))
		case 1:
			ins := make([]byte, 1+r.IntN(64))
			for i := range ins {
				ins[i] = byte(r.Uint32())
			}
			out = append(out[:at], append(ins, out[at:]...)...)
		case 2:
			out = append(out[:at], out[at+1+r.IntN(7):]...)
		}
	}
	return out
}

// moveSegments permutes 64 KiB segments of b.
func moveSegments(b []byte, r *rand.Rand) []byte {
	const seg = 64 << 10
	n := len(b) / seg
	perm := r.Perm(n)
	out := make([]byte, 0, len(b))
	for _, i := range perm {
		out = append(out, b[i*seg:(i+1)*seg]...)
	}
	return append(out, b[n*seg:]...)
}

func opCounts(t testing.TB, p []byte) (map[metadata.InstallOperation_Type]int, *Metadata) {
	t.Helper()
	m, err := ReadMetadata(bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	c := map[metadata.InstallOperation_Type]int{}
	for _, op := range m.Partitions[0].Ops {
		c[op.GetType()]++
		var n uint64
		for _, e := range op.DstExtents {
			n += e.GetNumBlocks()
		}
		// A delta's ops: new data (REPLACE_XZ, REPLACE) in operations of
		// up to novelBlk, copies and zeros of up to copyScale and
		// zeroScale times deltaOpBlocks, the rest of up to deltaOpBlocks.
		limit := uint64(deltaOpBlocks)
		switch op.GetType() {
		case OpReplaceXZ, OpReplace:
			limit = novelBlk
		case OpSourceCopy:
			limit = copyScale * deltaOpBlocks
		case OpZero:
			limit = zeroScale * deltaOpBlocks
		}
		if n > limit && m.MinorVersion != 0 {
			t.Errorf("op %v has %d dst blocks (> %d)", op.GetType(), n, limit)
		}
		// AOSP paycheck's rule: a source operation reads source blocks
		// and carries their hash.
		if k := opKinds[op.GetType()]; k != nil && k.source && (len(op.SrcExtents) == 0 || len(op.GetSrcSha256Hash()) != 32) {
			t.Errorf("op %v has %d source extents, a %d-byte source hash", op.GetType(), len(op.SrcExtents), len(op.GetSrcSha256Hash()))
		}
	}
	return c, m
}

func TestDeltaRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	base := testImage(3<<20, 11)
	random := make([]byte, 3<<20)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	// "files": the image with each 256 KiB piece edited in place and
	// shifted.
	var edited []byte
	for off := 0; off < len(base); off += 256 << 10 {
		edited = append(edited, mutate(base[off:off+256<<10], r, 20)...)
	}
	tests := []struct {
		name  string
		old   []byte
		new   []byte
		want  []metadata.InstallOperation_Type // must appear
		maxSz int                              // payload bytes, 0 = no bound
	}{
		{"identical", base, base, []metadata.InstallOperation_Type{OpSourceCopy}, 4 << 10},
		{"all changed", base, random, []metadata.InstallOperation_Type{OpReplace}, 0},
		{"moved blocks", base, moveSegments(base, r), []metadata.InstallOperation_Type{OpSourceCopy}, 8 << 10},
		{"edited and shifted", base, edited, nil, len(base) / 20},
		{"grown", base[:2<<20], append(append([]byte(nil), base...), mutate(base[:1<<20], r, 50)...), nil, 0},
		{"shrunk", base, mutate(base[:1<<20+12345], r, 10), nil, 0},
		{"odd sizes", base[:1<<20+100], base[:2<<20+4095], []metadata.InstallOperation_Type{OpSourceCopy}, 0},
		{"zeros", base, make([]byte, 1<<20), []metadata.InstallOperation_Type{OpZero}, 2 << 10},
		{"from zeros", make([]byte, 1<<20), base[:1<<20], nil, 0},
		{"bsdiff wins", base, mutate(base, r, 200), nil, len(base) / 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := genDelta(t, tc.old, tc.new, GenerateOptions{Keys: keys(t, 1)})
			counts, m := opCounts(t, p)
			for _, w := range tc.want {
				if counts[w] == 0 {
					t.Errorf("no %v op; ops %v", w, counts)
				}
			}
			if tc.maxSz > 0 && len(p) > tc.maxSz {
				t.Errorf("payload %d bytes, want ≤ %d; ops %v", len(p), tc.maxSz, counts)
			}
			if want := wantMinor(counts); m.MinorVersion != want {
				t.Errorf("minor version %d, want %d for %v", m.MinorVersion, want, counts)
			}
			// AOSP paycheck: {src,dst}_length on SOURCE_BSDIFF of minor 3,
			// nowhere else.
			for i, op := range m.Partitions[0].Ops {
				want := op.GetType() == OpSourceBsdiff && m.MinorVersion <= 3
				if has := op.SrcLength != nil && op.DstLength != nil; has != want || (op.SrcLength != nil) != (op.DstLength != nil) {
					t.Errorf("op %d %v (minor %d): src_length %v, dst_length %v", i, op.GetType(), m.MinorVersion, op.SrcLength != nil, op.DstLength != nil)
				}
			}
			size := (len(tc.new) + 4095) &^ 4095
			got, err := applyDelta(t, p, tc.old, size, len(tc.new), Options{Keys: pubs(keys(t, 1)...)})
			if err != nil {
				t.Fatalf("Apply: %v (ops %v)", err, counts)
			}
			if !bytes.Equal(got, tc.new) {
				t.Fatalf("target differs from the new image (ops %v)", counts)
			}
			t.Logf("%d bytes, ops %v", len(p), counts)
		})
	}
}

func wantMinor(c map[metadata.InstallOperation_Type]int) uint32 {
	if c[OpPuffdiff] > 0 {
		return 5
	}
	if c[OpZero]+c[OpBrotliBsdiff]+c[OpDiscard] > 0 {
		return 4
	}
	return 3
}

func TestDeltaUsesBsdiff(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	old := testImage(2<<20, 21)
	// Incompressible data edited lightly: only a bsdiff is small.
	for i := range old[:1<<20] {
		old[i] = byte(r.Uint32())
	}
	img := mutate(old, r, 30)[:len(old)]
	p, res := genDelta(t, old, img, GenerateOptions{})
	if res.OpCounts["SOURCE_BSDIFF"]+res.OpCounts["BROTLI_BSDIFF"] == 0 {
		t.Fatalf("no bsdiff op: %v", res.OpCounts)
	}
	if len(p) > 64<<10 {
		t.Errorf("payload %d bytes for 30 edits", len(p))
	}
	got, err := applyDelta(t, p, old, len(img), len(img), Options{})
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("Apply: %v, equal %v", err, bytes.Equal(got, img))
	}
}

func TestDeltaDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	old := testImage(2<<20, 31)
	img := mutate(moveSegments(old, r), r, 40)
	a, _ := genDelta(t, old, img, GenerateOptions{Workers: 1})
	b, _ := genDelta(t, old, img, GenerateOptions{Workers: 3})
	if !bytes.Equal(a, b) {
		t.Fatal("outputs differ between 1 and 3 workers")
	}
}

func TestDeltaWrongSourceRejectedBeforeWrite(t *testing.T) {
	old := testImage(1<<20, 41)
	img := append(append([]byte(nil), testImage(256<<10, 42)...), old[256<<10:]...)
	p, _ := genDelta(t, old, img, GenerateOptions{})
	wrong := append([]byte(nil), old...)
	wrong[len(wrong)-1] ^= 1 // differs only in a block no operation reads
	tests := []struct {
		name    string
		src     []byte
		wantErr error
	}{
		{"right source", old, nil},
		{"wrong source", wrong, ErrSourceMismatch},
		{"short source", old[:len(old)/2], ErrSourceMismatch},
		{"no source", nil, ErrNoSource},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := applyDelta(t, p, tc.src, len(img), len(img), Options{})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil {
				if !bytes.Equal(got, img) {
					t.Fatal("target differs")
				}
				return
			}
			if !bytes.Equal(got, bytes.Repeat([]byte{0xEE}, len(img))) {
				t.Fatal("target was written")
			}
		})
	}
}

// TestDeltaOpSourceHash: one op whose source differs from its
// src_sha256_hash fails with ErrSourceMismatch before its write, for each
// source op type.
func TestDeltaOpSourceHash(t *testing.T) {
	src := testImage(64<<10, 51)
	nw := mutate(src, rand.New(rand.NewPCG(1, 2)), 10)[:32<<10]
	for _, tc := range []struct {
		name string
		typ  metadata.InstallOperation_Type
		fmt  bsdiff.Format
	}{
		{"SOURCE_COPY", OpSourceCopy, 0},
		{"SOURCE_BSDIFF BSDIFF40", OpSourceBsdiff, bsdiff.BSDIFF40},
		{"SOURCE_BSDIFF BSDF2", OpSourceBsdiff, bsdiff.BSDF2BZ2},
		{"BROTLI_BSDIFF", OpBrotliBsdiff, bsdiff.BSDF2Brotli},
	} {
		for _, good := range []bool{true, false} {
			t.Run(tc.name+map[bool]string{true: " good", false: " bad"}[good], func(t *testing.T) {
				want := nw
				op := &metadata.InstallOperation{Type: tc.typ.Enum(), DstExtents: ext(0, 8),
					SrcExtents: []*metadata.Extent{{StartBlock: proto.Uint64(2), NumBlocks: proto.Uint64(6)},
						{StartBlock: proto.Uint64(SparseHole), NumBlocks: proto.Uint64(1)}, {StartBlock: proto.Uint64(0), NumBlocks: proto.Uint64(2)}}}
				view := append(append(append([]byte(nil), src[8<<10:32<<10]...), make([]byte, 4096)...), src[:8<<10]...)
				var data [][]byte
				if tc.typ == OpSourceCopy {
					op.SrcExtents = []*metadata.Extent{{StartBlock: proto.Uint64(2), NumBlocks: proto.Uint64(6)}, {StartBlock: proto.Uint64(SparseHole), NumBlocks: proto.Uint64(2)}}
					view = append(append([]byte(nil), src[8<<10:32<<10]...), make([]byte, 8<<10)...)
					want = view
				} else {
					var patch bytes.Buffer
					if err := bsdiff.Diff(context.Background(), view, nw, &patch, bsdiff.Options{Format: tc.fmt}); err != nil {
						t.Fatal(err)
					}
					data = [][]byte{patch.Bytes()}
				}
				h := sha256.Sum256(view)
				if !good {
					h[0] ^= 1
				}
				op.SrcSha256Hash = h[:]
				p := writeOps(t, &Spec{MinorVersion: 4, Ops: []*metadata.InstallOperation{op}}, data, nil)
				got, err := applyDelta(t, p, src, 32<<10, 32<<10, Options{})
				if good {
					if err != nil || !bytes.Equal(got, want) {
						t.Fatalf("err %v, equal %v", err, bytes.Equal(got, want))
					}
					return
				}
				if !errors.Is(err, ErrOperationHashMismatch) {
					t.Fatalf("err %v, want %v", err, ErrOperationHashMismatch)
				}
				if tc.typ != OpSourceCopy && !errors.Is(err, ErrSourceMismatch) {
					t.Fatalf("err %v, want %v", err, ErrSourceMismatch)
				}
				if !bytes.Equal(got, bytes.Repeat([]byte{0xEE}, len(got))) {
					t.Fatal("target was written")
				}
			})
		}
	}
}

// FuzzDeltaOps applies a SOURCE_BSDIFF/BROTLI_BSDIFF operation carrying
// arbitrary patch data: it must fail cleanly or produce exactly dst bytes.
func FuzzDeltaOps(f *testing.F) {
	src := testImage(32<<10, 61)
	nw := mutate(src, rand.New(rand.NewPCG(9, 9)), 8)[:16<<10]
	for _, fm := range []bsdiff.Format{bsdiff.BSDIFF40, bsdiff.BSDF2BZ2, bsdiff.BSDF2Brotli} {
		var patch bytes.Buffer
		if err := bsdiff.Diff(context.Background(), src, nw, &patch, bsdiff.Options{Format: fm}); err != nil {
			f.Fatal(err)
		}
		f.Add(patch.Bytes(), false)
		f.Add(patch.Bytes(), true)
	}
	f.Add([]byte("BSDF2\x02\x02\x02"), true)
	f.Fuzz(func(t *testing.T, patch []byte, brotliOp bool) {
		if len(patch) == 0 {
			return
		}
		typ := OpSourceBsdiff
		if brotliOp {
			typ = OpBrotliBsdiff
		}
		op := &metadata.InstallOperation{Type: typ.Enum(), DstExtents: ext(0, 4), SrcExtents: ext(0, 8)}
		p := writeOps(t, &Spec{MinorVersion: 4, Ops: []*metadata.InstallOperation{op}}, [][]byte{patch}, nil)
		f := targetFile(t, 16<<10)
		_, err := Apply(context.Background(), bytes.NewReader(p), f, Options{Source: bytes.NewReader(src), Workers: 1})
		if err != nil {
			if !errors.Is(err, ErrOperationExecution) && !errors.Is(err, ErrInvalidManifest) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		r, err := bsdiff.NewReader(bytes.NewReader(patch), int64(len(patch)), bytes.NewReader(src), int64(len(src)))
		if err != nil {
			t.Fatalf("applied a patch the reader refuses: %v", err)
		}
		if r.Size() > 16<<10 {
			t.Fatalf("applied a patch of %d bytes into 16 KiB", r.Size())
		}
	})
}

// TestDeltaResume interrupts a delta after each checkpoint and resumes it
// with the source; resuming with a wrong source fails before writing.
func TestDeltaResume(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	old := testImage(2<<20, 71)
	img := mutate(moveSegments(old, r), r, 30)
	p, _ := genDelta(t, old, img, GenerateOptions{ChunkSize: 64 << 10})
	var cps []Checkpoint
	o := Options{Source: bytes.NewReader(old), Checkpoint: func(cp *Checkpoint) error {
		cps = append(cps, *cp)
		return nil
	}}
	size := (len(img) + 4095) &^ 4095
	if _, err := Apply(context.Background(), bytes.NewReader(p), targetFile(t, size), o); err != nil {
		t.Fatal(err)
	}
	if len(cps) < 4 {
		t.Fatalf("%d checkpoints", len(cps))
	}
	errStop := errors.New("stop")
	for _, i := range []int{0, len(cps) / 2, len(cps) - 2} {
		cp := cps[i]
		f := targetFile(t, size)
		n := 0
		o1 := Options{Source: bytes.NewReader(old), Checkpoint: func(*Checkpoint) error {
			if n == i {
				return errStop
			}
			n++
			return nil
		}}
		if _, err := Apply(context.Background(), bytes.NewReader(p), f, o1); !errors.Is(err, errStop) {
			t.Fatalf("checkpoint %d: interrupted apply: %v", i, err)
		}
		before := readAll(t, f, size)
		bad := append([]byte(nil), old...)
		bad[len(bad)-1] ^= 1
		if _, err := Resume(context.Background(), &cp, bytes.NewReader(p[cp.Offset:]), f, Options{Source: bytes.NewReader(bad)}); !errors.Is(err, ErrSourceMismatch) {
			t.Fatalf("checkpoint %d: resume with a wrong source: %v", i, err)
		}
		if !bytes.Equal(readAll(t, f, size), before) {
			t.Fatalf("checkpoint %d: resume with a wrong source wrote", i)
		}
		if _, err := Resume(context.Background(), &cp, bytes.NewReader(p[cp.Offset:]), f, Options{Source: bytes.NewReader(old)}); err != nil {
			t.Fatalf("checkpoint %d: resume: %v", i, err)
		}
		if !bytes.Equal(readAll(t, f, len(img)), img) {
			t.Fatalf("checkpoint %d: target differs", i)
		}
	}
}

// TestDeltaNewDataInLargeOps: data with nothing like it in the old image
// (an added file) goes into REPLACE_XZ operations larger than a diff's,
// whose dictionary spans more of it, and the delta still applies.
func TestDeltaNewDataInLargeOps(t *testing.T) {
	old := testImage(2<<20, 11)
	img := append(append([]byte(nil), old...), testImage(4<<20, 12)...)
	p, _ := genDelta(t, old, img, GenerateOptions{Keys: keys(t, 1)})
	_, m := opCounts(t, p)
	var most uint64
	for _, op := range m.Partitions[0].Ops {
		if op.GetType() != OpReplaceXZ {
			continue
		}
		var n uint64
		for _, e := range op.DstExtents {
			n += e.GetNumBlocks()
		}
		most = max(most, n)
	}
	if most <= deltaOpBlocks {
		t.Errorf("largest REPLACE_XZ op %d blocks, want > %d (new data in one large op)", most, deltaOpBlocks)
	}
	got, err := applyDelta(t, p, old, len(img), len(img), Options{Keys: pubs(keys(t, 1)...)})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Fatal("target differs from the new image")
	}
}

// TestDeltaWithoutSourceOpsChecksSource: a delta whose operations read no
// source block (the new image shares nothing with the old) is still
// refused, before a write, on a source other than the one it was made
// from; given none, it applies.
func TestDeltaWithoutSourceOpsChecksSource(t *testing.T) {
	old, img := testImage(1<<20, 51), make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(52, 1)) // random: nothing for a diff to find
	for i := range img {
		img[i] = byte(r.Uint32())
	}
	p, _ := genDelta(t, old, img, GenerateOptions{})
	_, m := opCounts(t, p)
	for _, op := range m.Partitions[0].Ops {
		if len(op.SrcExtents) > 0 {
			t.Fatalf("op %v reads the source: the test needs a delta without source operations", op.GetType())
		}
	}
	wrong := append([]byte(nil), old...)
	wrong[0] ^= 1
	got, err := applyDelta(t, p, wrong, len(img), len(img), Options{})
	if !errors.Is(err, ErrSourceMismatch) {
		t.Fatalf("wrong source: %v, want ErrSourceMismatch", err)
	}
	if !bytes.Equal(got, bytes.Repeat([]byte{0xEE}, len(img))) {
		t.Fatal("target was written")
	}
	if got, err := applyDelta(t, p, nil, len(img), len(img), Options{}); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("no source: %v (target equal: %v)", err, bytes.Equal(got, img))
	}
}
