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
// built by mkfs.ext4 -d from files of /usr, the second after an
// "upgrade": ~6% of the files edited as a rebuild changes them, ~2%
// removed, ~2% of the bytes added as new files. The images are cached in
// os.TempDir(). Reports the delta's size against the full payload,
// `zstd -19 --long=31 --patch-from`, `xdelta3 -9 -B <image size>` (when
// installed) and Debian's bsdiff, and the generator's and the
// applier's time and peak RSS (child processes of cmd/payload_generator),
// with dd's copy time of the new image as the physical reference.
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
	genT, genRSS := deltaRunMeasured(b, 0, bin, "generate", "--old", oldImg, "--new", newImg, "--key", priv,
		"--version", "2.0.0", "--source-version", "1.0.0", "-o", delta)
	deltaSize := deltaFileSize(b, delta)

	target := filepath.Join(work, "target.img")
	f, err := os.Create(target)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Truncate(deltaFileSize(b, newImg)); err != nil {
		b.Fatal(err)
	}
	f.Close()
	applyT, applyRSS := deltaRunMeasured(b, 0, bin, "apply", delta, "--key", pub, "--target", target, "--source", oldImg)
	b.StopTimer()
	if deltaFileHash(b, target) != deltaFileHash(b, newImg) {
		b.Fatal("applied target differs from the new image")
	}
	ddT, _ := deltaRunMeasured(b, 0, "dd", "if="+newImg, "of="+filepath.Join(work, "dd.img"), "bs=1M", "conv=fsync", "status=none")

	// The references at their strongest settings: zstd -19 with a window
	// over the whole old image, and xdelta3 -9 with a source window of the
	// whole image.
	zpatch := filepath.Join(work, "z.patch")
	zT, _ := deltaRunMeasured(b, 0, "zstd", "-q", "-f", "-19", "--long=31", "--patch-from="+oldImg, newImg, "-o", zpatch)
	zSize := deltaFileSize(b, zpatch)

	testenv.Bench(b, "delta_image_mb", float64(mb), "MiB")
	testenv.Bench(b, "delta_size", float64(deltaSize), "B")
	testenv.Bench(b, "delta_full_payload_size", float64(fullSize), "B")
	testenv.Bench(b, "delta_ratio_to_full", float64(deltaSize)/float64(fullSize), "x")
	testenv.Bench(b, "delta_zstd_patch_size", float64(zSize), "B")
	testenv.Bench(b, "delta_ratio_to_zstd_patch", float64(deltaSize)/float64(zSize), "x")
	testenv.Bench(b, "delta_zstd_patch_seconds", zT.Seconds(), "s")
	if _, err := exec.LookPath("xdelta3"); err != nil {
		b.Logf("SKIP xdelta3 figures: xdelta3 not installed (make deps installs it as root)")
	} else {
		xpatch := filepath.Join(work, "x.patch")
		xT, _ := deltaRunMeasured(b, 0, "xdelta3", "-q", "-f", "-9", "-B", strconv.FormatInt(deltaFileSize(b, oldImg), 10),
			"-e", "-s", oldImg, newImg, xpatch)
		xSize := deltaFileSize(b, xpatch)
		testenv.Bench(b, "delta_xdelta3_size", float64(xSize), "B")
		testenv.Bench(b, "delta_ratio_to_xdelta3", float64(deltaSize)/float64(xSize), "x")
		testenv.Bench(b, "delta_ratio_to_best_reference", float64(deltaSize)/float64(min(xSize, zSize)), "x")
		testenv.Bench(b, "delta_xdelta3_seconds", xT.Seconds(), "s")
	}
	testenv.Bench(b, "delta_generate_seconds", genT.Seconds(), "s")
	testenv.Bench(b, "delta_generate_peak_rss", float64(genRSS)/(1<<20), "MiB")
	testenv.Bench(b, "delta_apply_seconds", applyT.Seconds(), "s")
	testenv.Bench(b, "delta_apply_peak_rss", float64(applyRSS)/(1<<20), "MiB")
	testenv.Bench(b, "delta_dd_copy_seconds", ddT.Seconds(), "s")
	testenv.Bench(b, "delta_apply_vs_dd", applyT.Seconds()/ddT.Seconds(), "x")

	dpatch := filepath.Join(work, "debian.patch")
	dT, _, derr := deltaTryMeasured(b, debianBsdiffTimeout, "prlimit", "--as=12884901888", "bsdiff", oldImg, newImg, dpatch)
	switch {
	case errors.Is(derr, context.DeadlineExceeded):
		b.Logf("Debian bsdiff: timeout after %v", debianBsdiffTimeout)
		testenv.Bench(b, "delta_debian_bsdiff_timeout", debianBsdiffTimeout.Seconds(), "s")
	case derr != nil:
		b.Logf("Debian bsdiff failed: %v", derr)
		testenv.Bench(b, "delta_debian_bsdiff_failed", 1, "bool")
	default:
		ds := deltaFileSize(b, dpatch)
		testenv.Bench(b, "delta_debian_bsdiff_size", float64(ds), "B")
		testenv.Bench(b, "delta_ratio_to_debian_bsdiff", float64(deltaSize)/float64(ds), "x")
		testenv.Bench(b, "delta_debian_bsdiff_seconds", dT.Seconds(), "s")
	}
}

func deltaRunCmd(b testing.TB, name string, args ...string) {
	b.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

// deltaRunMeasured runs a child process and returns its wall time and peak RSS
// (bytes).
func deltaRunMeasured(b testing.TB, timeout time.Duration, name string, args ...string) (time.Duration, int64) {
	b.Helper()
	d, rss, err := deltaTryMeasured(b, timeout, name, args...)
	if err != nil {
		b.Fatalf("%s %v: %v", name, args, err)
	}
	return d, rss
}

func deltaTryMeasured(b testing.TB, timeout time.Duration, name string, args ...string) (time.Duration, int64, error) {
	ctx := b.Context()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	// /usr/bin/time reports the child's own peak RSS: rusage of a direct
	// child would include this process's, shared before exec.
	cmd := exec.CommandContext(ctx, "/usr/bin/time", append([]string{"-f", "maxrss_kib=%M", name}, args...)...)
	// On timeout kill the whole process group: time's child would
	// otherwise survive (and keep the output pipe open).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if ctx.Err() != nil {
		return d, 0, ctx.Err()
	}
	if err != nil {
		return d, 0, fmt.Errorf("%v: %s", err, out)
	}
	var rss int64
	if i := bytes.LastIndex(out, []byte("maxrss_kib=")); i >= 0 {
		rss, _ = strconv.ParseInt(strings.TrimSpace(string(out[i+len("maxrss_kib="):])), 10, 64)
		rss <<= 10
		out = out[:i]
	}
	b.Logf("%s %s: %v, peak RSS %d MiB: %s", name, args[0], d, rss>>20, out)
	return d, rss, nil
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
