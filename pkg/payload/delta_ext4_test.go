package payload

import (
	"bytes"
	"context"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
)

var treeEpoch = time.Unix(1700000000, 0)

// writeTreeFile writes data at dir/rel with the fixed epoch as mtime.
func writeTreeFile(t testing.TB, dir, rel string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, treeEpoch, treeEpoch); err != nil {
		t.Fatal(err)
	}
}

// fixDirTimes sets every directory's mtime to the epoch (creating files
// changed them), so mkfs output depends only on the contents.
func fixDirTimes(t testing.TB, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return os.Chtimes(p, treeEpoch, treeEpoch)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// mkfsExt4 makes a deterministic ext4 image of sizeMB MiB from tree.
func mkfsExt4(t testing.TB, tree, img string, sizeMB int) {
	t.Helper()
	fixDirTimes(t, tree)
	cmd := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", "-d", tree,
		"-U", "2b2cb5b4-5d8a-4b7e-9d4e-3d0c1e6b5a01", "-E", "hash_seed=9b1f5d7e-2d7c-4a3e-8f00-6a5b4c3d2e1f",
		"-T", "default", img, strconv.Itoa(sizeMB)+"M")
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1700000000")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
}

// TestDeltaExt4 diffs small ext4 images made by mkfs.ext4 -d from trees
// that differ as after a package upgrade: files edited, grown, shrunk,
// added and removed (which moves everything allocated after them).
func TestDeltaExt4(t *testing.T) {
	testenv.RequireTool(t, "mkfs.ext4")
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(1, 4))
	files := map[string][]byte{}
	var names []string
	for i := range 60 {
		name := filepath.Join("usr", "lib", strconv.Itoa(i%7), "f"+strconv.Itoa(i))
		files[name] = testImage(4096+r.IntN(200<<10), uint64(100+i))
		names = append(names, name)
	}
	oldTree, newTree := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	for _, n := range names {
		writeTreeFile(t, oldTree, n, files[n])
	}
	for i, n := range names {
		b := files[n]
		switch i % 10 {
		case 1: // edited
			b = mutate(b, r, 20)
		case 2: // grown
			b = append(mutate(b, r, 5), testImage(30<<10, uint64(900+i))...)
		case 3: // shrunk
			b = b[:len(b)/2]
		case 4: // removed
			continue
		}
		writeTreeFile(t, newTree, n, b)
	}
	writeTreeFile(t, newTree, "usr/share/added", testImage(100<<10, 999))
	oldImg, newImg := filepath.Join(dir, "old.img"), filepath.Join(dir, "new.img")
	mkfsExt4(t, oldTree, oldImg, 16)
	mkfsExt4(t, newTree, newImg, 16)
	old, err := os.ReadFile(oldImg)
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(newImg)
	if err != nil {
		t.Fatal(err)
	}
	p, res := genDelta(t, old, img, GenerateOptions{Keys: keys(t, 1)})
	full := generate(t, img, GenerateOptions{})
	t.Logf("delta %d bytes (full %d), ops %v", len(p), len(full), res.OpCounts)
	if res.OpCounts["SOURCE_COPY"] == 0 || res.OpCounts["SOURCE_BSDIFF"]+res.OpCounts["BROTLI_BSDIFF"] == 0 {
		t.Errorf("want SOURCE_COPY and bsdiff ops, got %v", res.OpCounts)
	}
	if len(p)*3 > len(full) {
		t.Errorf("delta %d bytes is more than a third of the full payload (%d)", len(p), len(full))
	}
	got, err := applyDelta(t, p, old, len(img), len(img), Options{Keys: pubs(keys(t, 1)...)})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Fatal("target differs from the new image")
	}
}

// TestDeltaExt4Files: with the images as files, the generator maps the
// changed blocks of rewritten files to their old versions through debugfs
// (deltafiles.go). Many near-copies of each file (as generated code has)
// mislead content anchors; the file map must not make the delta larger
// and the delta must apply exactly.
func TestDeltaExt4Files(t *testing.T) {
	dir, r, oldTree, newTree := ext4Trees(t, 7)
	var rewritten []string
	for i := range 240 {
		name := filepath.Join("usr", "lib", "api"+strconv.Itoa(i%12), "v"+strconv.Itoa(i))
		// Near-copies: 12 families of one base each, lightly edited.
		b := mutate(testImage(8<<10+r.IntN(24<<10), uint64(i%12)), r, 8)
		writeTreeFile(t, oldTree, name, b)
		if i%8 == 3 {
			b = mutate(b, r, 1+len(b)/2048)
			rewritten = append(rewritten, "/"+name)
		}
		writeTreeFile(t, newTree, name, b)
	}
	oldImg, newImg := filepath.Join(dir, "old.img"), filepath.Join(dir, "new.img")
	mkfsExt4(t, oldTree, oldImg, 32)
	mkfsExt4(t, newTree, newImg, 32)
	oldData, err := os.ReadFile(oldImg)
	if err != nil {
		t.Fatal(err)
	}
	newData, err := os.ReadFile(newImg)
	if err != nil {
		t.Fatal(err)
	}
	of, err := os.Open(oldImg)
	if err != nil {
		t.Fatal(err)
	}
	defer of.Close()
	nf, err := os.Open(newImg)
	if err != nil {
		t.Fatal(err)
	}
	defer nf.Close()

	size := int64(len(newData))
	g := &deltaGen{o: GenerateOptions{Old: of, OldSize: size, New: nf, NewSize: size}}
	rw := blocksOf(t, newImg, rewritten)
	m, err := g.fileMap(context.Background(), rw)
	if err != nil {
		t.Fatal(err)
	}
	if len(m)*10 < len(rw)*9 {
		t.Fatalf("debugfs placed %d of the rewritten files' %d blocks in their files", len(m), len(rw))
	}
	withFiles := deltaOf(t, GenerateOptions{Old: of, OldSize: size, New: nf, NewSize: size})
	anchorsOnly, res := genDelta(t, oldData, newData, GenerateOptions{})
	if res.NoFileMap == nil { // images in memory: debugfs cannot read them
		t.Error("a delta of images in memory says nothing of its missing file map")
	}
	t.Logf("delta with the file map %d B, with anchors only %d B", len(withFiles), len(anchorsOnly))
	if len(withFiles) > len(anchorsOnly) {
		t.Errorf("the file map made the delta larger: %d > %d B", len(withFiles), len(anchorsOnly))
	}
	got, err := applyDelta(t, withFiles, oldData, len(newData), len(newData), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, newData) {
		t.Fatal("target differs from the new image")
	}
}

// ext4Trees makes a temporary directory with the paths of an old and a
// new tree in it, and a random source of seed (logged), for tests that
// diff ext4 images with debugfs' file map.
func ext4Trees(t *testing.T, seed uint64) (dir string, r *rand.Rand, oldTree, newTree string) {
	t.Helper()
	testenv.RequireTool(t, "mkfs.ext4", "debugfs")
	dir = t.TempDir()
	t.Logf("seed %d", seed)
	return dir, rand.New(rand.NewPCG(seed, 1)), filepath.Join(dir, "old"), filepath.Join(dir, "new")
}

// blocksOf lists the blocks of the given files of img.
func blocksOf(t *testing.T, img string, paths []string) []uint32 {
	t.Helper()
	lists, err := debugfsBlocks(context.Background(), img, paths)
	if err != nil {
		t.Fatal(err)
	}
	var all []uint32
	for i, l := range lists {
		if len(l) == 0 {
			t.Fatalf("debugfs: no blocks for %s", paths[i])
		}
		all = append(all, l...)
	}
	return all
}

// deltaOf is a delta of two image files, made with their file map.
func deltaOf(t *testing.T, o GenerateOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	res, err := GenerateDelta(context.Background(), &buf, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.NoFileMap != nil {
		t.Fatalf("no file map for image files: %v", res.NoFileMap)
	}
	return buf.Bytes()
}
