package payload

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/pkg/payload/metadata"
)

// blockOwners maps blocks of img to the path of the file holding them
// ("" for blocks of no file: metadata, the journal).
func blockOwners(t testing.TB, img string, blocks []uint32) map[uint32]string {
	t.Helper()
	ctx := context.Background()
	inodeOf, inodes := blockInodes(ctx, img, blocks)
	path := inodePaths(ctx, img, inodes)
	owner := map[uint32]string{}
	for b, ino := range inodeOf {
		owner[b] = path[ino]
	}
	return owner
}

// fileBlocks returns the data blocks of each path in img (nil when the
// path is absent).
func fileBlocks(t testing.TB, img string, paths []string) map[string][]uint32 {
	t.Helper()
	lists, err := debugfsBlocks(context.Background(), img, paths)
	if err != nil {
		t.Fatal(err)
	}
	res := map[string][]uint32{}
	for i, p := range paths {
		res[p] = lists[i]
	}
	return res
}

// deltaFileReport explains the changed blocks (diff and novel) of a delta
// by the files that hold them: blocks of files present in both images
// (rewritten) or only in the new one (added), whether the old version of
// a rewritten file was among the source blocks of the bsdiff operations
// that wrote it, and how much of it is deflate data (gzip, zip, png).
func deltaFileReport(t testing.TB, oldImg, newImg string, class []opClass, ops []*metadata.InstallOperation) {
	t.Helper()
	var changed []uint32
	for i, c := range class {
		if c >= classDiff {
			changed = append(changed, uint32(i))
		}
	}
	owner := blockOwners(t, newImg, changed)
	var paths []string
	seen := map[string]bool{}
	for _, p := range owner {
		if p != "" && !seen[p] {
			seen[p] = true
			paths = append(paths, p)
		}
	}
	oldBlocks := fileBlocks(t, oldImg, paths)
	// srcOf: for each dst block of a diff op, the op's source blocks.
	srcOf := map[uint32]map[uint32]bool{}
	for _, op := range ops {
		if len(op.GetSrcExtents()) == 0 || op.GetType() == OpSourceCopy {
			continue
		}
		src := map[uint32]bool{}
		for _, e := range op.GetSrcExtents() {
			for b := e.GetStartBlock(); b < e.GetStartBlock()+e.GetNumBlocks(); b++ {
				src[uint32(b)] = true
			}
		}
		for _, e := range op.GetDstExtents() {
			for b := e.GetStartBlock(); b < e.GetStartBlock()+e.GetNumBlocks(); b++ {
				srcOf[uint32(b)] = src
			}
		}
	}
	var cnt struct{ meta, added, rewritten, covered, uncovered, deflate [2]int }
	perFile := map[string]int{} // changed blocks per kind, class and path
	example := func(kind string, k int, p string) {
		perFile[kind+", class "+classNames[classDiff+opClass(k)]+": "+p]++
	}
	for _, b := range changed {
		k := 0
		if class[b] == classNovel {
			k = 1
		}
		p := owner[b]
		switch {
		case p == "":
			cnt.meta[k]++
			continue
		case oldBlocks[p] == nil:
			cnt.added[k]++
			example("added", k, p)
		default:
			cnt.rewritten[k]++
			src := srcOf[b]
			in := 0
			for _, ob := range oldBlocks[p] {
				if src[ob] {
					in++
				}
			}
			if src != nil && in*10 >= len(oldBlocks[p])*9 {
				cnt.covered[k]++
			} else {
				cnt.uncovered[k]++
				example("rewritten, old version not in the source", k, p)
			}
		}
		if isDeflateFile(p) {
			cnt.deflate[k]++
		}
	}
	top := slices.SortedFunc(maps.Keys(perFile), func(x, y string) int { return perFile[y] - perFile[x] })
	for _, k := range top[:min(12, len(top))] {
		t.Logf("changed blocks of %s: %d", k, perFile[k])
	}
	t.Logf("changed blocks [diff novel]: metadata %v, added files %v, rewritten files %v "+
		"(old version >=90%% in the op's source %v, not %v), of files holding deflate data %v",
		cnt.meta, cnt.added, cnt.rewritten, cnt.covered, cnt.uncovered, cnt.deflate)
}

// isDeflateFile says by its name whether a file holds deflate data.
func isDeflateFile(p string) bool {
	for _, ext := range []string{".gz", ".tgz", ".zip", ".jar", ".png", ".whl", ".egg", ".apk"} {
		if strings.HasSuffix(p, ext) {
			return true
		}
	}
	return false
}

// TestCutJobsKeepsAddedFilesApart: the changed blocks of each added file
// (no old version) make jobs of their own, apart from the blocks of
// rewritten files and metadata interleaved with them in the new image,
// and every changed block is in exactly one job.
func TestCutJobsKeepsAddedFilesApart(t *testing.T) {
	const n = 3000
	g := &deltaGen{newBlks: n, chunkBlk: deltaOpBlocks, files: map[uint32]fileRef{}}
	class := make([]opClass, n)
	for i := range n {
		class[i] = classDiff
		switch (i / 3) % 3 {
		case 0: // runs of three blocks of a rewritten file
			g.files[uint32(i)] = fileRef{old: []uint32{uint32(i)}, n: 3, file: i / 3}
		case 1: // an added file of three blocks
			g.files[uint32(i)] = fileRef{n: 3, file: i / 3}
		} // else metadata
	}
	seen := map[uint32]bool{}
	for _, j := range g.cutJobs(class, make([]uint32, n)) {
		first, ok := g.files[j.dst[0]]
		added := ok && first.old == nil
		if j.added != added {
			t.Fatalf("job from block %d: added %v, its first block's file %+v", j.dst[0], j.added, first)
		}
		for _, b := range j.dst {
			f, ok := g.files[b]
			if added && (!ok || f.file != first.file) || !added && ok && f.old == nil {
				t.Fatalf("job of %d blocks from %d mixes an added file with other blocks (block %d)", len(j.dst), j.dst[0], b)
			}
			if seen[b] {
				t.Fatalf("block %d in two jobs", b)
			}
			seen[b] = true
		}
		if len(j.dst) > deltaOpBlocks {
			t.Fatalf("job of %d blocks", len(j.dst))
		}
	}
	if len(seen) != n {
		t.Fatalf("%d of %d blocks in jobs", len(seen), n)
	}
}

// TestFillGaps: gaps of up to the given size between source blocks are
// filled, larger ones kept.
func TestFillGaps(t *testing.T) {
	got := fillGaps([]uint32{3, 5, 6, 10, 30, 31}, 3)
	want := []uint32{3, 4, 5, 6, 7, 8, 9, 10, 30, 31}
	if !slices.Equal(got, want) {
		t.Fatalf("fillGaps = %v, want %v", got, want)
	}
	if got := fillGaps(nil, 3); len(got) != 0 {
		t.Fatalf("fillGaps(nil) = %v", got)
	}
}

// TestAbsorbCopies: short runs of copied blocks between two changed
// blocks become changed, their old blocks kept for the diff's source;
// longer runs, runs at an edge or next to an added file's block or new
// data stay copies.
func TestAbsorbCopies(t *testing.T) {
	D, C, N := classDiff, classCopy, classNovel
	class := []opClass{D, C, C, D} // 1-2: absorbed
	for range absorbRun + 1 {
		class = append(class, C) // too long
	}
	x := len(class)
	// x+1: next to an added file's block (x+2); x+3: next to new data;
	// x+5: at the edge.
	class = append(class, D, C, D, C, N, C)
	g := &deltaGen{files: map[uint32]fileRef{uint32(x + 2): {n: 1}}}
	src := make([]uint32, len(class))
	for i := range src {
		src[i] = uint32(1000 + i)
	}
	want := slices.Clone(class)
	want[1], want[2] = D, D
	g.absorbCopies(class, src)
	if !slices.Equal(class, want) {
		t.Fatalf("classes %v, want %v", class, want)
	}
	if len(g.copySrc) != 2 || g.copySrc[1] != 1001 || g.copySrc[2] != 1002 {
		t.Fatalf("copySrc %v, want 1:1001 2:1002", g.copySrc)
	}
}

// TestCutJobsSizes: diffs are cut at the chunk size, copies and zeros at
// copyScale and zeroScale times it, each job within one class and in
// block order.
func TestCutJobsSizes(t *testing.T) {
	const copyBlk, zeroBlk = copyScale * deltaOpBlocks, zeroScale * deltaOpBlocks
	runs := []struct {
		c opClass
		n int
	}{{classZero, zeroBlk + 5}, {classCopy, copyBlk*2 + 7}, {classDiff, deltaOpBlocks + 3}, {classCopy, 10}}
	var class []opClass
	for _, r := range runs {
		for range r.n {
			class = append(class, r.c)
		}
	}
	g := &deltaGen{newBlks: len(class), chunkBlk: deltaOpBlocks, files: map[uint32]fileRef{}}
	want := map[opClass][]int{
		classZero: {zeroBlk, 5},
		classCopy: {copyBlk, copyBlk, 17}, // the last job takes both copy runs
		classDiff: {deltaOpBlocks, 3},
	}
	got := map[opClass][]int{}
	for _, j := range g.cutJobs(class, make([]uint32, len(class))) {
		for _, b := range j.dst {
			if class[b] != j.class {
				t.Fatalf("job of class %d holds block %d of class %d", j.class, b, class[b])
			}
		}
		got[j.class] = append(got[j.class], len(j.dst))
	}
	for c, w := range want {
		if !slices.Equal(got[c], w) {
			t.Errorf("class %d: jobs of %v blocks, want %v", c, got[c], w)
		}
	}
}
