package payload

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/payload/internal/puff"
	"github.com/abupdate/update_engine/pkg/payload/metadata"
	"google.golang.org/protobuf/proto"
)

// puffText is n bytes of text from a small vocabulary, as documentation.
func puffText(r *rand.Rand, n int) []byte {
	words := strings.Fields("the update engine writes the inactive partition then verifies its hash " +
		"and marks the slot bootable a delta payload carries operations against the source " +
		"changelog version release fixed bug security upstream package debian")
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(12) == 0 {
			b.WriteString(strconv.Itoa(r.IntN(100000)) + ".\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

func gzipBytes(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zipBytes(t testing.TB, r *rand.Rand, entries int) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for i := range entries {
		f, err := w.Create("org/example/C" + strconv.Itoa(i) + ".class")
		if err != nil {
			t.Fatal(err)
		}
		f.Write(puffText(r, 2000+r.IntN(20000)))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// puffdiffOp makes a PUFFDIFF operation turning src into nw (both whole
// blocks) with the generator's worker.
func puffdiffOp(t testing.TB, src, nw []byte) (*metadata.InstallOperation, []byte) {
	t.Helper()
	c := &deltaWorker{}
	patch, err := c.puffDiff(context.Background(), src, nw)
	if err != nil || patch == nil {
		t.Fatalf("puffDiff: %v (patch %d B)", err, len(patch))
	}
	h := sha256.Sum256(src)
	op := &metadata.InstallOperation{Type: OpPuffdiff.Enum(), DstExtents: ext(0, uint64(len(nw)/blockSize)), SrcSha256Hash: h[:]}
	if len(src) > 0 {
		op.SrcExtents = ext(0, uint64(len(src)/blockSize))
	}
	return op, patch
}

func padBlocks(b []byte) []byte {
	return append(b, make([]byte, -len(b)&(blockSize-1))...)
}

func TestPuffdiffApply(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 9))
	text := puffText(r, 200<<10)
	src := padBlocks(gzipBytes(t, text))
	edited := append(append(bytes.Clone(text[:50<<10]), "a new paragraph of release notes\n"...), text[50<<10:]...)
	nw := padBlocks(append(gzipBytes(t, edited), zipBytes(t, r, 5)...))
	for _, tc := range []struct {
		name string
		src  []byte
	}{{"from the old file", src}, {"empty source", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			op, patch := puffdiffOp(t, tc.src, nw)
			t.Logf("PUFFDIFF %d B for %d B (%d B of source)", len(patch), len(nw), len(tc.src))
			p := writeOps(t, &Spec{MinorVersion: 5, Ops: []*metadata.InstallOperation{op}}, [][]byte{patch}, nil)
			got, err := applyDelta(t, p, src, len(nw), len(nw), Options{})
			if err != nil || !bytes.Equal(got, nw) {
				t.Fatalf("err %v, equal %v", err, bytes.Equal(got, nw))
			}
		})
	}
}

// TestPuffdiffCorrupt applies PUFFDIFF operations whose patch (with a
// matching data hash) is damaged: each fails, the source is untouched, and
// a damaged header or source puff fails before anything is written.
func TestPuffdiffCorrupt(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	text := puffText(r, 80<<10)
	src := padBlocks(gzipBytes(t, text))
	nw := padBlocks(gzipBytes(t, append(puffText(r, 1000), text[:40<<10]...)))
	op, patch := puffdiffOp(t, src, nw)
	pt, err := puff.Decode(patch)
	if err != nil {
		t.Fatal(err)
	}
	hdrEnd := len(patch) - len(pt.Bsdiff)
	srcCopy := bytes.Clone(src)
	for i, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		early  bool // fails before writing
	}{
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, true},
		{"header size", func(b []byte) []byte { b[4] = 0x7F; return b }, true},
		{"header byte", func(b []byte) []byte { b[hdrEnd-3] ^= 0x41; return b }, false},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, false},
		{"bsdiff byte", func(b []byte) []byte { b[hdrEnd+40] ^= 0xFF; return b }, false},
		{"source deflate moved", func(b []byte) []byte {
			q := *pt
			q.Src.Deflates = []puff.BitExtent{{Offset: pt.Src.Deflates[0].Offset + 8, Length: pt.Src.Deflates[0].Length}}
			return q.Encode()
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := tc.mutate(bytes.Clone(patch))
			o := proto.Clone(op).(*metadata.InstallOperation)
			p := writeOps(t, &Spec{MinorVersion: 5, Ops: []*metadata.InstallOperation{o}}, [][]byte{bad}, nil)
			got, err := applyDelta(t, p, src, len(nw), len(nw), Options{})
			if err == nil {
				t.Fatalf("case %d: damaged patch applied", i)
			}
			t.Logf("%v", err)
			if !bytes.Equal(src, srcCopy) {
				t.Fatal("source changed")
			}
			if tc.early && !bytes.Equal(got, bytes.Repeat([]byte{0xEE}, len(got))) {
				t.Fatal("target was written")
			}
		})
	}
}

// TestDeltaPuffdiffExt4 diffs ext4 images where a gzip file was
// rewritten, another renamed (a new version directory) and edited, and
// gzip and zip files added: the rewritten one is carried by PUFFDIFF, the
// delta is smaller than without it, and it applies.
func TestDeltaPuffdiffExt4(t *testing.T) {
	oldImg, newImg, o := puffImages(t)
	delta := deltaOf(t, o)
	counts, m := opCounts(t, delta)
	t.Logf("ops %v, %d B", counts, len(delta))
	if m.MinorVersion != 5 {
		t.Errorf("minor version %d", m.MinorVersion)
	}
	puffed := map[uint32]bool{}
	for _, op := range m.Partitions[0].Ops {
		if op.GetType() == OpPuffdiff {
			for _, b := range extentBlocks(op.DstExtents) {
				puffed[b] = true
			}
		}
	}
	for _, f := range []string{"/usr/share/doc/x/changelog.gz"} {
		for _, b := range blocksOf(t, newImg, []string{f}) {
			if !puffed[b] {
				t.Errorf("block %d of %s not written by a PUFFDIFF", b, f)
			}
		}
	}
	oldData, newData := readFile(t, oldImg), readFile(t, newImg)
	got, err := applyDelta(t, delta, oldData, len(newData), len(newData), Options{})
	if err != nil || !bytes.Equal(got, newData) {
		t.Fatalf("apply: %v, equal %v", err, bytes.Equal(got, newData))
	}
	tryPuffdiff = false
	defer func() { tryPuffdiff = true }()
	without := deltaOf(t, o)
	t.Logf("without PUFFDIFF: %d B", len(without))
	if len(without) <= len(delta) {
		t.Fatalf("PUFFDIFF did not shrink the delta: %d <= %d B", len(without), len(delta))
	}
}

// TestDeltaPuffdiffLoopDevices applies the delta of puffImages from a
// loop device holding the old image onto another.
func TestDeltaPuffdiffLoopDevices(t *testing.T) {
	testenv.RequireRoot(t)
	oldImg, newImg, o := puffImages(t)
	delta := deltaOf(t, o)
	tgtImg := filepath.Join(t.TempDir(), "target.img")
	if err := os.WriteFile(tgtImg, make([]byte, 32<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	srcDev, tgtDev := testenv.LoopDevice(t, oldImg), testenv.LoopDevice(t, tgtImg)
	src := openFile(t, srcDev)
	tgt, err := os.OpenFile(tgtDev, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	if _, err := Apply(context.Background(), bytes.NewReader(delta), tgt, Options{Source: src}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 32<<20)
	if _, err := tgt.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, readFile(t, newImg)) {
		t.Fatal("target device differs from the new image")
	}
}

// puffImages builds the images of TestDeltaPuffdiffExt4 and the options
// that diff them (as files, with their file map).
func puffImages(t *testing.T) (oldImg, newImg string, o GenerateOptions) {
	t.Helper()
	dir, r, oldTree, newTree := ext4Trees(t, 11)
	for i := range 20 {
		name := filepath.Join("usr", "lib", "f"+strconv.Itoa(i))
		b := testImage(8<<10+r.IntN(24<<10), uint64(i))
		writeTreeFile(t, oldTree, name, b)
		writeTreeFile(t, newTree, name, b)
	}
	// Documentation: Go's sources (richer text than puffText).
	srcs, _ := filepath.Glob(filepath.Join(runtime.GOROOT(), "src", "net", "http", "*.go"))
	if len(srcs) < 16 {
		t.Skip("no Go sources to make documentation from")
	}
	doc := func(i int) []byte { return append(readFile(t, srcs[2*i]), readFile(t, srcs[2*i+1])...) }
	log, news := doc(0), doc(1)
	writeTreeFile(t, oldTree, "usr/share/doc/x/changelog.gz", gzipBytes(t, log))
	writeTreeFile(t, newTree, "usr/share/doc/x/changelog.gz", gzipBytes(t, append(puffText(r, 3000), log...)))
	writeTreeFile(t, oldTree, "usr/share/doc/pkg-1.0/NEWS.gz", gzipBytes(t, news))
	edited := append(append(bytes.Clone(news[:len(news)/3]), puffText(r, 2000)...), news[len(news)/3:]...)
	writeTreeFile(t, newTree, "usr/share/doc/pkg-1.1/NEWS.gz", gzipBytes(t, edited))
	for i := range 4 {
		writeTreeFile(t, newTree, "usr/share/doc/n"+strconv.Itoa(i)+"/README.gz", gzipBytes(t, doc(2+i)))
	}
	writeTreeFile(t, newTree, "usr/share/java/new.jar", zipBytes(t, r, 30))
	oldImg, newImg = filepath.Join(dir, "old.img"), filepath.Join(dir, "new.img")
	mkfsExt4(t, oldTree, oldImg, 32)
	mkfsExt4(t, newTree, newImg, 32)
	of, nf := openFile(t, oldImg), openFile(t, newImg)
	return oldImg, newImg, GenerateOptions{Old: of, OldSize: 32 << 20, New: nf, NewSize: 32 << 20}
}

func openFile(t testing.TB, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzPuffdiffOp applies a PUFFDIFF operation carrying arbitrary data
// (seeded with real patches, from a gzip source and from nothing): it
// must fail with an operation error or apply.
func FuzzPuffdiffOp(f *testing.F) {
	r := rand.New(rand.NewPCG(4, 4))
	text := puffText(r, 30<<10)
	src := padBlocks(gzipBytes(f, text))
	nw := padBlocks(gzipBytes(f, append(puffText(r, 500), text...)))[:len(src)]
	for _, s := range [][]byte{src, nil} {
		_, patch := puffdiffOp(f, s, nw)
		f.Add(patch, s != nil)
	}
	f.Fuzz(func(t *testing.T, patch []byte, withSrc bool) {
		if len(patch) == 0 {
			return
		}
		op := &metadata.InstallOperation{Type: OpPuffdiff.Enum(), DstExtents: ext(0, uint64(len(nw)/blockSize))}
		if withSrc {
			op.SrcExtents = ext(0, uint64(len(src)/blockSize))
		}
		p := writeOps(t, &Spec{MinorVersion: 5, Ops: []*metadata.InstallOperation{op}}, [][]byte{patch}, nil)
		_, err := applyDelta(t, p, src, len(nw), len(nw), Options{Workers: 1})
		if err != nil && !errors.Is(err, ErrOperationExecution) && !errors.Is(err, ErrInvalidManifest) {
			t.Fatalf("unexpected error class: %v", err)
		}
	})
}
