package payload

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
)

var classNames = [numClasses]string{"zero", "copy", "diff", "novel"}

// deltaBreakdown explains a delta payload: it classifies the new blocks as
// the generator does (in-process, the same code), attributes every
// operation's data to the class of its first dst block, and compresses
// each class's new blocks alone the way the references would: `xz -9e`
// and `zstd -19 --long=31`.
// prefix names the bench lines.
func deltaBreakdown(b testing.TB, prefix, oldImg, newImg, payloadPath string, refs bool) {
	b.Helper()
	class := deltaClasses(b, oldImg, newImg)
	pf, err := os.Open(payloadPath)
	if err != nil {
		b.Fatal(err)
	}
	defer pf.Close()
	m, err := ReadMetadata(pf)
	if err != nil {
		b.Fatal(err)
	}
	type key struct {
		c  opClass
		op string
	}
	type agg struct{ ops, blocks, bytes int64 }
	sum := map[key]*agg{}
	var perClass [numClasses]agg
	for _, op := range m.Partitions[0].Ops {
		dst := op.GetDstExtents()
		k := key{class[dst[0].GetStartBlock()], op.GetType().String()}
		if sum[k] == nil {
			sum[k] = &agg{}
		}
		a := sum[k]
		a.ops++
		for _, e := range dst {
			a.blocks += int64(e.GetNumBlocks())
		}
		a.bytes += int64(op.GetDataLength())
		perClass[k.c].bytes += int64(op.GetDataLength())
	}
	keys := make([]key, 0, len(sum))
	for k := range sum {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y key) int {
		if x.c != y.c {
			return int(x.c) - int(y.c)
		}
		return strings.Compare(x.op, y.op)
	})
	for _, k := range keys {
		a := sum[k]
		b.Logf("%s breakdown: class %-5s %-14s %5d ops %8d blocks %10d B", prefix, classNames[k.c], k.op, a.ops, a.blocks, a.bytes)
	}
	if _, err := exec.LookPath("debugfs"); err == nil {
		deltaFileReport(b, oldImg, newImg, class, m.Partitions[0].Ops)
	}
	for c := range numClasses {
		n := 0
		for _, x := range class {
			if x == c {
				n++
			}
		}
		testenv.Bench(b, fmt.Sprintf("%s_%s_blocks", prefix, classNames[c]), float64(n), "blocks")
		if c >= classDiff {
			testenv.Bench(b, fmt.Sprintf("%s_%s_bytes", prefix, classNames[c]), float64(perClass[c].bytes), "B")
		}
		if c >= classDiff && refs {
			deltaClassReferences(b, prefix+"_"+classNames[c], newImg, class, c)
		}
	}
}

// deltaClasses runs the generator's scan and classification on the pair
// (new data: changed blocks with no anchor near them and no old version
// of their file; the runs that bsdiff does not shorten join them later).
func deltaClasses(b testing.TB, oldImg, newImg string) []opClass {
	b.Helper()
	of, err := os.Open(oldImg)
	if err != nil {
		b.Fatal(err)
	}
	defer of.Close()
	nf, err := os.Open(newImg)
	if err != nil {
		b.Fatal(err)
	}
	defer nf.Close()
	o := GenerateOptions{Old: of, OldSize: deltaFileSize(b, oldImg), New: nf, NewSize: deltaFileSize(b, newImg)}
	g := &deltaGen{o: o, oldBlks: int(o.OldSize / blockSize), newBlks: int((o.NewSize + blockSize - 1) / blockSize),
		chunkBlk: deltaOpBlocks}
	ctx := context.Background()
	if err := g.scan(ctx); err != nil {
		b.Fatal(err)
	}
	jobs, novel, err := g.plan(ctx)
	if err != nil {
		b.Fatal(err)
	}
	class := make([]opClass, g.newBlks)
	for _, j := range jobs {
		for _, d := range j.dst {
			class[d] = j.class
		}
	}
	for _, d := range novel {
		class[d] = classNovel
	}
	return class
}

// deltaClassReferences writes the new blocks of class c, concatenated, to a
// file and reports what xz -9e and zstd -19 make of them.
func deltaClassReferences(b testing.TB, prefix, newImg string, class []opClass, c opClass) {
	b.Helper()
	src, err := os.ReadFile(newImg)
	if err != nil {
		b.Fatal(err)
	}
	var data []byte
	for i, x := range class {
		if x == c {
			data = append(data, src[i*blockSize:min((i+1)*blockSize, len(src))]...)
		}
	}
	src = nil
	if len(data) == 0 {
		return
	}
	dir := b.TempDir()
	raw := filepath.Join(dir, "blocks")
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		b.Fatal(err)
	}
	testenv.Bench(b, prefix+"_raw", float64(len(data)), "B")
	for _, r := range []struct {
		name string
		args []string
	}{
		{"xz9e", []string{"xz", "-9e", "-k", "-c", raw}},
		{"zstd19", []string{"zstd", "-19", "--long=31", "-c", raw}},
	} {
		out := filepath.Join(dir, r.name)
		deltaRunCmd(b, "sh", "-c", strings.Join(r.args, " ")+" > "+out)
		testenv.Bench(b, prefix+"_"+r.name, float64(deltaFileSize(b, out)), "B")
	}
}

// TestDeltaBreakdownFiles is deltaBreakdown on a pair and a delta made
// outside the test: DELTA_OLD, DELTA_NEW, DELTA_PAYLOAD (skipped unless
// all three are set).
func TestDeltaBreakdownFiles(t *testing.T) {
	oldImg, newImg, p := os.Getenv("DELTA_OLD"), os.Getenv("DELTA_NEW"), os.Getenv("DELTA_PAYLOAD")
	if oldImg == "" || newImg == "" || p == "" {
		t.Skip("SKIP: set DELTA_OLD, DELTA_NEW and DELTA_PAYLOAD")
	}
	testenv.RequireTool(t, "xz", "zstd")
	deltaBreakdown(t, "breakdown", oldImg, newImg, p, os.Getenv("DELTA_REFS") != "")
}

// TestDeltaCachedRun: the bench's reference figures come back from the
// cache as they were measured, without running the reference again.
func TestDeltaCachedRun(t *testing.T) {
	name := filepath.Join(t.TempDir(), "ref")
	want := measured{wall: 3 * time.Second, cpu: 2500 * time.Millisecond, rss: 7 << 20}
	runs := 0
	run := func() (int64, measured) { runs++; return 1234, want }
	for range 2 {
		size, m := deltaCachedRun(t, name, run)
		if size != 1234 || m != want {
			t.Fatalf("got %d %+v, want 1234 %+v", size, m, want)
		}
	}
	if runs != 1 {
		t.Fatalf("the reference ran %d times, want 1", runs)
	}
}
