package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
)

// debianBsdiffTimeout bounds Debian's bsdiff on the whole images (it is
// quadratic on long zero runs and needs ~9 bytes of memory per byte).
const debianBsdiffTimeout = 150 * time.Second

// BenchmarkDelta: a pair of ext4 images (BENCH_IMAGE_MB, default 1024)
// built by mkfs.ext4 -d from files of /usr, the second after a
// "rebuild": ~6% of the files edited as a rebuild changes them, ~2%
// removed, ~2% of the bytes added as new files. The images are cached in
// os.TempDir(). Reports the delta's size against the full payload,
// `zstd -19 --long=31 --patch-from`, `xdelta3 -9 -B <image size>` (when
// installed) and Debian's bsdiff, and the generator's and the
// applier's time and peak RSS (child processes of cmd/payload_generator),
// with dd's copy time of the new image as the physical reference.
// BENCH_DELTA_BREAKDOWN=1 adds what each class of blocks costs.
func BenchmarkDelta(b *testing.B) {
	testenv.RequireTool(b, "mkfs.ext4", "zstd", "bsdiff", "dd", "prlimit", "/usr/bin/time")
	mb := 1024
	if s := os.Getenv("BENCH_IMAGE_MB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 16 {
			b.Fatalf("BENCH_IMAGE_MB=%q", s)
		}
		mb = n
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("abupdate-delta-bench-v1-%d", mb))
	oldImg, newImg := deltaBenchImages(b, dir, mb)
	benchDeltaPair(b, "delta", dir, oldImg, newImg, true)
}

// benchDeltaPair measures the delta of one pair; prefix names the bench
// lines, dir caches the full payload's size. Debian's bsdiff runs when
// withBsdiff.
func benchDeltaPair(b *testing.B, prefix, dir, oldImg, newImg string, withBsdiff bool) {
	work := b.TempDir()
	bin := filepath.Join(work, "payload_generator")
	deltaRunCmd(b, "go", "build", "-o", bin, "github.com/abupdate/update_engine/cmd/payload_generator")
	priv, pub := filepath.Join(work, "key.pem"), filepath.Join(work, "pub.pem")
	deltaRunCmd(b, bin, "keygen", "--private", priv, "--public", pub)

	// The full payload of the new image (cached: xz is slow).
	fullSize := deltaCachedSize(b, filepath.Join(dir, "full.size"), func() int64 {
		out := filepath.Join(work, "full.payload")
		deltaRunCmd(b, bin, "generate", "--new", newImg, "--key", priv, "-o", out)
		return deltaFileSize(b, out)
	})

	b.ResetTimer()
	delta := filepath.Join(work, "delta.payload")
	gen := deltaRunMeasured(b, 0, bin, "generate", "--old", oldImg, "--new", newImg, "--key", priv,
		"--version", "2.0.0", "--source-version", "1.0.0", "-o", delta)
	deltaSize := deltaFileSize(b, delta)
	p, err := os.ReadFile(delta)
	if err != nil {
		b.Fatal(err)
	}
	opCounts(b, p) // the operations' rules (AOSP paycheck's among them)

	target := filepath.Join(work, "target.img")
	f, err := os.Create(target)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Truncate(deltaFileSize(b, newImg)); err != nil {
		b.Fatal(err)
	}
	f.Close()
	apply := deltaRunMeasured(b, 0, bin, "apply", delta, "--key", pub, "--target", target, "--source", oldImg)
	b.StopTimer()
	if deltaFileHash(b, target) != deltaFileHash(b, newImg) {
		b.Fatal("applied target differs from the new image")
	}
	dd := deltaRunMeasured(b, 0, "dd", "if="+newImg, "of="+filepath.Join(work, "dd.img"), "bs=1M", "conv=fsync", "status=none")

	testenv.Bench(b, prefix+"_image_mb", float64(deltaFileSize(b, newImg)>>20), "MiB")
	testenv.Bench(b, prefix+"_size", float64(deltaSize), "B")
	testenv.Bench(b, prefix+"_full_payload_size", float64(fullSize), "B")
	testenv.Bench(b, prefix+"_ratio_to_full", float64(deltaSize)/float64(fullSize), "x")
	zstd := benchDeltaReferences(b, prefix, dir, work, oldImg, newImg, deltaSize)
	testenv.Bench(b, prefix+"_generate_seconds", gen.wall.Seconds(), "s")
	testenv.Bench(b, prefix+"_generate_cpu_seconds", gen.cpu.Seconds(), "s")
	testenv.Bench(b, prefix+"_generate_cpu_vs_zstd_patch", gen.cpu.Seconds()/zstd.cpu.Seconds(), "x")
	testenv.Bench(b, prefix+"_generate_peak_rss", float64(gen.rss)/(1<<20), "MiB")
	testenv.Bench(b, prefix+"_apply_seconds", apply.wall.Seconds(), "s")
	testenv.Bench(b, prefix+"_apply_peak_rss", float64(apply.rss)/(1<<20), "MiB")
	testenv.Bench(b, prefix+"_dd_copy_seconds", dd.wall.Seconds(), "s")
	testenv.Bench(b, prefix+"_apply_vs_dd", apply.wall.Seconds()/dd.wall.Seconds(), "x")
	if withBsdiff {
		benchDebianBsdiff(b, prefix, work, oldImg, newImg, deltaSize)
	}
	if os.Getenv("BENCH_DELTA_BREAKDOWN") != "" {
		deltaBreakdown(b, prefix, oldImg, newImg, delta, false)
	}
}

// benchDeltaReferences measures the references at their strongest
// settings: zstd -19 with a window over the whole old image, and xdelta3
// -9 with a source window of the whole image. It returns zstd's run.
// Their sizes and times are cached in dir with the images (zstd takes 6
// minutes on the 512 MiB pair, 7 on the 1 GiB one); BENCH_DELTA_REFS=1
// measures them again.
func benchDeltaReferences(b *testing.B, prefix, dir, work, oldImg, newImg string, deltaSize int64) measured {
	zSize, z := deltaCachedRun(b, filepath.Join(dir, "zstd.ref"), func() (int64, measured) {
		zpatch := filepath.Join(work, "z.patch")
		z := deltaRunMeasured(b, 0, "zstd", "-q", "-f", "-19", "--long=31", "--patch-from="+oldImg, newImg, "-o", zpatch)
		return deltaFileSize(b, zpatch), z
	})
	testenv.Bench(b, prefix+"_zstd_patch_size", float64(zSize), "B")
	testenv.Bench(b, prefix+"_ratio_to_zstd_patch", float64(deltaSize)/float64(zSize), "x")
	testenv.Bench(b, prefix+"_zstd_patch_seconds", z.wall.Seconds(), "s")
	testenv.Bench(b, prefix+"_zstd_patch_cpu_seconds", z.cpu.Seconds(), "s")
	if _, err := exec.LookPath("xdelta3"); err != nil {
		b.Logf("SKIP xdelta3 figures: xdelta3 not installed (make deps installs it as root)")
		return z
	}
	xSize, x := deltaCachedRun(b, filepath.Join(dir, "xdelta3.ref"), func() (int64, measured) {
		xpatch := filepath.Join(work, "x.patch")
		x := deltaRunMeasured(b, 0, "xdelta3", "-q", "-f", "-9", "-B", strconv.FormatInt(deltaFileSize(b, oldImg), 10),
			"-e", "-s", oldImg, newImg, xpatch)
		return deltaFileSize(b, xpatch), x
	})
	testenv.Bench(b, prefix+"_xdelta3_size", float64(xSize), "B")
	testenv.Bench(b, prefix+"_ratio_to_xdelta3", float64(deltaSize)/float64(xSize), "x")
	testenv.Bench(b, prefix+"_ratio_to_best_reference", float64(deltaSize)/float64(min(xSize, zSize)), "x")
	testenv.Bench(b, prefix+"_xdelta3_seconds", x.wall.Seconds(), "s")
	return z
}

// benchDebianBsdiff runs Debian's bsdiff on the whole images, bounded in
// time and memory.
func benchDebianBsdiff(b *testing.B, prefix, work, oldImg, newImg string, deltaSize int64) {
	dpatch := filepath.Join(work, "debian.patch")
	d, derr := deltaTryMeasured(b, debianBsdiffTimeout, "prlimit", "--as=12884901888", "bsdiff", oldImg, newImg, dpatch)
	switch {
	case errors.Is(derr, context.DeadlineExceeded):
		b.Logf("Debian bsdiff: timeout after %v", debianBsdiffTimeout)
		testenv.Bench(b, prefix+"_debian_bsdiff_timeout", debianBsdiffTimeout.Seconds(), "s")
	case derr != nil:
		b.Logf("Debian bsdiff failed: %v", derr)
		testenv.Bench(b, prefix+"_debian_bsdiff_failed", 1, "bool")
	default:
		ds := deltaFileSize(b, dpatch)
		testenv.Bench(b, prefix+"_debian_bsdiff_size", float64(ds), "B")
		testenv.Bench(b, prefix+"_ratio_to_debian_bsdiff", float64(deltaSize)/float64(ds), "x")
		testenv.Bench(b, prefix+"_debian_bsdiff_seconds", d.wall.Seconds(), "s")
	}
}

func deltaRunCmd(b testing.TB, name string, args ...string) {
	b.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

// measured is a child process's wall time, CPU time (user + system) and
// peak RSS (bytes).
type measured struct {
	wall, cpu time.Duration
	rss       int64
}

// deltaRunMeasured runs a child process and measures it.
func deltaRunMeasured(b testing.TB, timeout time.Duration, name string, args ...string) measured {
	b.Helper()
	m, err := deltaTryMeasured(b, timeout, name, args...)
	if err != nil {
		b.Fatalf("%s %v: %v", name, args, err)
	}
	return m
}

func deltaTryMeasured(b testing.TB, timeout time.Duration, name string, args ...string) (measured, error) {
	ctx := b.Context()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	// /usr/bin/time reports the child's own peak RSS: rusage of a direct
	// child would include this process's, shared before exec.
	cmd := exec.CommandContext(ctx, "/usr/bin/time", append([]string{"-f", "cpu_s=%U %S maxrss_kib=%M", name}, args...)...)
	// On timeout kill the whole process group: time's child would
	// otherwise survive (and keep the output pipe open).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if args[0] == "apply" {
		// The apply runs as on a host, with all cores (its peak RSS
		// grows with its workers), even in a GOMAXPROCS=1 bench run.
		cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GOMAXPROCS=") })
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if ctx.Err() != nil {
		return measured{wall: d}, ctx.Err()
	}
	if err != nil {
		return measured{wall: d}, fmt.Errorf("%v: %s", err, out)
	}
	var rss int64
	var user, sys float64
	if i := bytes.LastIndex(out, []byte("cpu_s=")); i >= 0 {
		if _, err := fmt.Sscanf(string(out[i:]), "cpu_s=%g %g maxrss_kib=%d", &user, &sys, &rss); err != nil {
			return measured{wall: d}, fmt.Errorf("/usr/bin/time output %q: %w", out[i:], err)
		}
		rss <<= 10
		out = out[:i]
	}
	cpu := time.Duration((user + sys) * float64(time.Second))
	b.Logf("%s %s: %v, CPU %v, peak RSS %d MiB: %s", name, args[0], d, cpu, rss>>20, out)
	return measured{d, cpu, rss}, nil
}

func deltaFileSize(b testing.TB, name string) int64 {
	b.Helper()
	st, err := os.Stat(name)
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}

func deltaFileHash(b testing.TB, name string) string {
	b.Helper()
	f, err := os.Open(name)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		b.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func deltaCachedSize(b testing.TB, name string, compute func() int64) int64 {
	if s, err := os.ReadFile(name); err == nil {
		if n, err := strconv.ParseInt(string(s), 10, 64); err == nil {
			return n
		}
	}
	n := compute()
	if err := os.WriteFile(name, []byte(strconv.FormatInt(n, 10)), 0o644); err != nil {
		b.Fatal(err)
	}
	return n
}

// deltaCachedRun returns the output size and measurement of run, cached
// in name (with the load at the time: the figures printed from the cache
// are logged as such).
func deltaCachedRun(b testing.TB, name string, run func() (int64, measured)) (int64, measured) {
	var size int64
	var m measured
	var load float64
	if s, err := os.ReadFile(name); err == nil && os.Getenv("BENCH_DELTA_REFS") == "" {
		if _, err := fmt.Sscan(string(s), &size, &m.wall, &m.cpu, &m.rss, &load); err == nil {
			b.Logf("%s: cached: %d B, %v, CPU %v (measured at load1=%.2f)", name, size, m.wall, m.cpu, load)
			return size, m
		}
	}
	size, m = run()
	rec := fmt.Sprintf("%d %d %d %d %.2f\n", size, int64(m.wall), int64(m.cpu), m.rss, testenv.Load1Value())
	if err := os.WriteFile(name, []byte(rec), 0o644); err != nil {
		b.Fatal(err)
	}
	return size, m
}

// deltaBenchImages builds (or reuses) old.img and new.img in dir.
func deltaBenchImages(b testing.TB, dir string, mb int) (string, string) {
	oldImg, newImg := filepath.Join(dir, "old.img"), filepath.Join(dir, "new.img")
	done := filepath.Join(dir, "done")
	if _, err := os.Stat(done); err == nil {
		return oldImg, newImg
	}
	os.RemoveAll(dir)
	oldTree, newTree := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	budget := int64(mb) << 20 * 7 / 10
	var oldBytes, added int64
	var idx int
	r := rand.New(rand.NewPCG(2026, 11))
	err := filepath.WalkDir("/usr", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: skip
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if added > budget/50 {
			return filepath.SkipAll
		}
		data, err := os.ReadFile(p)
		if err != nil || len(data) > 32<<20 {
			return nil
		}
		rel := p[1:]
		if oldBytes >= budget { // after the old set: added files
			writeTreeFile(b, newTree, rel, data)
			added += int64(len(data))
			return nil
		}
		oldBytes += int64(len(data))
		writeTreeFile(b, oldTree, rel, data)
		idx++
		switch x := r.IntN(100); {
		case x < 2: // removed
		case x < 8: // rebuilt: edits all over, about one per 2 KiB
			writeTreeFile(b, newTree, rel, mutate(data, r, 1+len(data)/2048))
		default:
			writeTreeFile(b, newTree, rel, data)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("bench images: %d files, %d MiB old data, %d KiB added", idx, oldBytes>>20, added>>10)
	mkfsExt4(b, oldTree, oldImg, mb)
	mkfsExt4(b, newTree, newImg, mb)
	os.RemoveAll(oldTree)
	os.RemoveAll(newTree)
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return oldImg, newImg
}

// The upgrade pair (BenchmarkDeltaUpgrade) is made like issue 20's OS
// update pair: a 512 MiB ext4 image in which ~5.6% of the blocks changed:
// 494 files rewritten, 332 removed, 809 added.
const (
	upgradeMB        = 512
	upgradeSeed      = 20
	upgradeRewritten = 494
	upgradeRemoved   = 332
	upgradeAdded     = 809
	upgradeMaxFile   = 8 << 20 // rewritten and added files: at most this size
)

// BenchmarkDeltaUpgrade is BenchmarkDelta on the upgrade pair: files of
// /usr in an order shuffled by a fixed seed fill 70% of the old image;
// upgradeRewritten of them are rewritten (edited as a rebuild changes
// them), upgradeRemoved removed, and the next upgradeAdded files of the
// shuffled order are added. Debian's bsdiff is not run (BenchmarkDelta
// has it). Cached in os.TempDir().
func BenchmarkDeltaUpgrade(b *testing.B) {
	testenv.RequireTool(b, "mkfs.ext4", "zstd", "dd", "/usr/bin/time")
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("abupdate-delta-upgrade-v1-%d-%d", upgradeMB, upgradeSeed))
	oldImg, newImg := deltaUpgradeImages(b, dir)
	benchDeltaPair(b, "delta_upgrade", dir, oldImg, newImg, false)
}

// deltaUpgradeImages builds (or reuses) the upgrade pair in dir.
func deltaUpgradeImages(b testing.TB, dir string) (string, string) {
	oldImg, newImg := filepath.Join(dir, "old.img"), filepath.Join(dir, "new.img")
	done := filepath.Join(dir, "done")
	if _, err := os.Stat(done); err == nil {
		return oldImg, newImg
	}
	os.RemoveAll(dir)
	r := rand.New(rand.NewPCG(upgradeSeed, 56))
	b.Logf("upgrade pair: seed %d", upgradeSeed)
	files := usrFiles(b)
	r.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
	oldTree, newTree := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	budget := int64(upgradeMB) << 20 * 7 / 10
	var oldBytes int64
	n := 0
	for ; n < len(files) && oldBytes < budget; n++ {
		oldBytes += files[n].size
	}
	old, rest := files[:n], files[n:]
	// Rewritten and removed files are distinct, drawn from the old set.
	fate := map[int]byte{}
	for _, i := range r.Perm(len(old)) {
		switch {
		case len(fate) < upgradeRewritten && old[i].size <= upgradeMaxFile:
			fate[i] = 'w'
		case len(fate) >= upgradeRewritten && len(fate) < upgradeRewritten+upgradeRemoved:
			fate[i] = 'r'
		}
	}
	var changed int64
	for i, f := range old {
		data := readUsrFile(b, f.path)
		writeTreeFile(b, oldTree, f.path[1:], data)
		switch fate[i] {
		case 'r':
		case 'w':
			data = mutate(data, r, 1+len(data)/2048)
			changed += int64(len(data))
			writeTreeFile(b, newTree, f.path[1:], data)
		default:
			writeTreeFile(b, newTree, f.path[1:], data)
		}
	}
	added := 0
	for _, f := range rest {
		if added == upgradeAdded {
			break
		}
		if f.size > upgradeMaxFile {
			continue
		}
		writeTreeFile(b, newTree, f.path[1:], readUsrFile(b, f.path))
		changed += f.size
		added++
	}
	b.Logf("upgrade pair: %d files, %d MiB old data, %d rewritten, %d removed, %d added, %d KiB of rewritten and added data",
		len(old), oldBytes>>20, upgradeRewritten, upgradeRemoved, added, changed>>10)
	mkfsExt4(b, oldTree, oldImg, upgradeMB)
	mkfsExt4(b, newTree, newImg, upgradeMB)
	os.RemoveAll(oldTree)
	os.RemoveAll(newTree)
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return oldImg, newImg
}

type usrFile struct {
	path string
	size int64
}

// usrFiles lists the regular files of /usr up to 32 MiB, in walk order.
func usrFiles(b testing.TB) []usrFile {
	var files []usrFile
	err := filepath.WalkDir("/usr", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil // unreadable or not a file: skip
		}
		if info, err := d.Info(); err == nil && info.Size() > 0 && info.Size() <= 32<<20 {
			files = append(files, usrFile{p, info.Size()})
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return files
}

func readUsrFile(b testing.TB, p string) []byte {
	data, err := os.ReadFile(p)
	if err != nil {
		b.Fatal(err)
	}
	return data
}
