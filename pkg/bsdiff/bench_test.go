package bsdiff

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
)

// rebuild simulates a new build of a program: a few blocks of code
// inserted (shifting everything after them), 4-byte addresses adjusted by
// the shift in a quarter of the 4 KiB pages after each insertion, and a
// few scattered byte edits.
func rebuild(old []byte, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	nw := bytes.Clone(old)
	for k := 0; k < 3; k++ {
		at := r.IntN(len(nw))
		ins := bytes.Clone(old[r.IntN(len(old)-4096):][:1024+r.IntN(3072)])
		nw = append(nw[:at:at], append(ins, nw[at:]...)...)
		shift := uint32(len(ins))
		for page := at / 4096; page < len(nw)/4096; page++ {
			if r.IntN(4) != 0 {
				continue
			}
			for j := 0; j < 4; j++ {
				o := page*4096 + r.IntN(4092)
				binary.LittleEndian.PutUint32(nw[o:], binary.LittleEndian.Uint32(nw[o:])+shift)
			}
		}
	}
	for k := 0; k < len(nw)/10000; k++ {
		nw[r.IntN(len(nw))] = byte(r.Uint32())
	}
	return nw
}

func BenchmarkBinary(b *testing.B) {
	old, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "pkg/tool", runtime.GOOS+"_"+runtime.GOARCH, "link"))
	if err != nil {
		b.Skipf("no go linker binary to diff: %v", err)
	}
	benchPair(b, "binary", old, rebuild(old, 1))
}

// BenchmarkExt4 diffs two ext4 images made by mkfs.ext4 -d from a tree of
// Go sources, the second with about 8% of the files edited, two added and
// one removed.
func BenchmarkExt4(b *testing.B) {
	old, nw := ext4Pair(b)
	benchPair(b, "ext4", old, nw)
}

func ext4Pair(b testing.TB) (old, nw []byte) {
	testenv.RequireTool(b, "mkfs.ext4")
	src := filepath.Join(runtime.GOROOT(), "src", "net", "http")
	dir := b.TempDir()
	oldTree, newTree := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	copyTree(b, src, oldTree, nil)
	r := rand.New(rand.NewPCG(9, 9))
	n := 0
	copyTree(b, src, newTree, func(rel string, data []byte) []byte {
		n++
		switch {
		case n == 5:
			return nil // removed
		case r.IntN(12) == 0:
			return bytes.ReplaceAll(data, []byte("err"), []byte("error"))
		}
		return data
	})
	must(b, os.WriteFile(filepath.Join(newTree, "added1.go"), bytes.Repeat([]byte("// new file\n"), 2000), 0o644))
	must(b, os.WriteFile(filepath.Join(newTree, "added2.txt"), []byte(strings.Repeat("0123456789abcdef", 500)), 0o644))
	return mkfs(b, oldTree, filepath.Join(dir, "a.img")), mkfs(b, newTree, filepath.Join(dir, "b.img"))
}

func copyTree(b testing.TB, src, dst string, edit func(rel string, data []byte) []byte) {
	epoch := time.Unix(1700000000, 0)
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if edit != nil {
			if data = edit(rel, data); data == nil {
				return nil
			}
		}
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return err
		}
		return os.Chtimes(out, epoch, epoch)
	})
	must(b, err)
	// Directory times last: creating files changed them.
	must(b, filepath.WalkDir(dst, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return os.Chtimes(path, epoch, epoch)
	}))
}

func mkfs(b testing.TB, tree, img string) []byte {
	f, err := os.Create(img)
	must(b, err)
	must(b, f.Truncate(16<<20))
	must(b, f.Close())
	cmd := exec.Command("mkfs.ext4", "-q", "-F", "-d", tree, "-U", "2b2cb5b4-5d8a-4b7e-9d4e-3d0c1e6b5a01",
		"-E", "hash_seed=9b1f5d7e-2d7c-4a3e-8f00-6a5b4c3d2e1f", "-T", "default", img)
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1700000000")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	data, err := os.ReadFile(img)
	must(b, err)
	return data
}

const debianTimeout = 30 * time.Second

// benchPair diffs and patches old→new with this package and with Debian's
// bsdiff/bspatch, and prints sizes, times, their ratios and memory.
func benchPair(b *testing.B, name string, old, nw []byte) {
	testenv.RequireTool(b, "bsdiff", "bspatch")
	ctx := context.Background()
	dir := b.TempDir()
	oldF, newF := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	debPatch, outF := filepath.Join(dir, "deb.patch"), filepath.Join(dir, "out")
	ourPatchF := filepath.Join(dir, "our.patch")
	must(b, os.WriteFile(oldF, old, 0o644))
	must(b, os.WriteFile(newF, nw, 0o644))
	in := float64(len(old) + len(nw))
	mib := float64(len(nw)) / (1 << 20)

	for i := 0; i < b.N; i++ {
		// Ours, BSDIFF40 (same compression as Debian's) and BSDF2/brotli.
		var p40, pbr bytes.Buffer
		runtime.GC()
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		t0 := time.Now()
		must(b, Diff(ctx, old, nw, &p40, Options{Format: BSDIFF40}))
		ourDiff := time.Since(t0)
		runtime.ReadMemStats(&ms1)
		alloc := float64(ms1.TotalAlloc - ms0.TotalAlloc)
		t0 = time.Now()
		must(b, Diff(ctx, old, nw, &pbr, Options{}))
		ourBrotli := time.Since(t0)

		// Debian's bsdiff searches from every byte of long runs, which
		// can take very long on filesystem images: bound it.
		tctx, cancel := context.WithTimeout(ctx, debianTimeout)
		t0 = time.Now()
		out, err := exec.CommandContext(tctx, "bsdiff", oldF, newF, debPatch).CombinedOutput()
		debDiff := time.Since(t0)
		timedOut := tctx.Err() == context.DeadlineExceeded
		cancel()
		bench := func(k string, v float64, unit string) {
			testenv.Bench(b, fmt.Sprintf("bsdiff_%s_%s", name, k), v, unit)
		}
		bench("old_size", float64(len(old)), "bytes")
		bench("new_size", float64(len(nw)), "bytes")
		bench("patch_bsdiff40", float64(p40.Len()), "bytes")
		bench("patch_bsdf2_brotli", float64(pbr.Len()), "bytes")
		bench("diff_time_bsdiff40", ourDiff.Seconds(), "s")
		bench("diff_time_brotli", ourBrotli.Seconds(), "s")
		bench("diff_alloc_per_input_byte", alloc/in, "B/B")
		if timedOut {
			bench("diff_time_debian_timed_out_after", debDiff.Seconds(), "s")
			bench("diff_time_ratio_vs_debian_below", ourDiff.Seconds()/debDiff.Seconds(), "x")
		} else if err != nil {
			b.Fatalf("bsdiff: %v: %s", err, out)
		}
		var deb []byte
		if !timedOut {
			deb, _ = os.ReadFile(debPatch)
		}

		// Apply: ours in-process (to memory), Debian's bspatch (files).
		var buf bytes.Buffer
		buf.Grow(len(nw))
		runtime.ReadMemStats(&ms0)
		t0 = time.Now()
		if _, err := Apply(ctx, bytes.NewReader(old), int64(len(old)), p40.Bytes(), &buf); err != nil {
			b.Fatal(err)
		}
		ourApply := time.Since(t0)
		runtime.ReadMemStats(&ms1)
		applyAlloc := float64(ms1.TotalAlloc - ms0.TotalAlloc)
		if !bytes.Equal(buf.Bytes(), nw) {
			b.Fatal("our patch applied wrong")
		}
		buf.Reset()
		t0 = time.Now()
		if _, err := Apply(ctx, bytes.NewReader(old), int64(len(old)), pbr.Bytes(), &buf); err != nil {
			b.Fatal(err)
		}
		ourApplyBr := time.Since(t0)
		if !bytes.Equal(buf.Bytes(), nw) {
			b.Fatal("our brotli patch applied wrong")
		}
		// Physical limit of producing new: a memory copy of it.
		t0 = time.Now()
		cp := bytes.Clone(nw)
		copyTime := time.Since(t0)
		_ = cp
		bench("apply_time_bsdiff40", ourApply.Seconds(), "s")
		bench("apply_time_brotli", ourApplyBr.Seconds(), "s")
		bench("apply_throughput_bsdiff40", mib/ourApply.Seconds(), "MiB/s")
		bench("apply_throughput_brotli", mib/ourApplyBr.Seconds(), "MiB/s")
		bench("apply_throughput_memcpy", mib/copyTime.Seconds(), "MiB/s")
		bench("apply_alloc_total", applyAlloc, "bytes")
		if deb == nil {
			continue
		}
		// Debian's bspatch applies our BSDIFF40 patch (timed), and its
		// own.
		must(b, os.WriteFile(ourPatchF, p40.Bytes(), 0o644))
		t0 = time.Now()
		run(b, "bspatch", oldF, outF, ourPatchF)
		debApply := time.Since(t0)
		got, err := os.ReadFile(outF)
		must(b, err)
		if !bytes.Equal(got, nw) {
			b.Fatal("Debian bspatch applied our patch wrong")
		}
		bench("patch_debian", float64(len(deb)), "bytes")
		bench("patch_size_ratio_bsdiff40_vs_debian", float64(p40.Len())/float64(len(deb)), "x")
		bench("patch_size_ratio_brotli_vs_debian", float64(pbr.Len())/float64(len(deb)), "x")
		bench("diff_time_debian", debDiff.Seconds(), "s")
		bench("diff_time_ratio_vs_debian", ourDiff.Seconds()/debDiff.Seconds(), "x")
		bench("apply_time_debian_bspatch", debApply.Seconds(), "s")
		bench("apply_time_ratio_vs_debian_bspatch", ourApply.Seconds()/debApply.Seconds(), "x")
	}
}
