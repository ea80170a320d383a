package payload

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/cgroup"
)

// BenchmarkApply builds a realistic ext4 image (mkfs.ext4 -d from files
// of /usr), full payloads of it (REPLACE, REPLACE_XZ, REPLACE_ZSTD), and
// times `payload_generator apply` in a child process (for its peak RSS)
// against `dd oflag=direct` and `xz -dc | dd oflag=direct` onto the same
// target: slot B of a loop-attached GPT disk as root, else a file. Sizes:
// BENCH_IMAGE_MB (comma-separated, default 128,1024). Images and payloads
// are cached under os.TempDir()/payload-bench. Sizes are set against one
// whole-image stream of the same image: `xz -T1 -6` (a Mender-lzma
// artifact) and `zstd -T1 -19` (SWUpdate's zstd).
//
// It also prints the verification bound: a signed payload is applied only
// after four SHA-256 passes (each op's data, the signed bytes, the whole
// payload for Omaha, the new partition), two of them single sequential
// streams, so no apply can beat min(cores×rate / all bytes hashed,
// rate / longest stream), with rate the single-core SHA-256 speed
// measured in the same run.
func BenchmarkApply(b *testing.B) {
	testenv.RequireTool(b, "mkfs.ext4", "dd", "xz")
	sizes := os.Getenv("BENCH_IMAGE_MB")
	if sizes == "" {
		sizes = "128,1024"
	}
	bin := filepath.Join(b.TempDir(), "payload_generator")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/abupdate/update_engine/cmd/payload_generator").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	for _, s := range strings.Split(sizes, ",") {
		mb, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			b.Fatalf("BENCH_IMAGE_MB: %v", err)
		}
		b.Run(fmt.Sprintf("%dMiB", mb), func(b *testing.B) { benchApply(b, bin, mb) })
	}
}

func benchApply(b *testing.B, bin string, mb int) {
	cache := filepath.Join(os.TempDir(), "payload-bench")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		b.Fatal(err)
	}
	img := filepath.Join(cache, fmt.Sprintf("ext4-%d.img", mb))
	if _, err := os.Stat(img); err != nil {
		buildExt4(b, img, mb)
	}
	key, pub := benchKey(b, cache)
	payloads := map[string]string{}
	for _, c := range []string{CompressNone, CompressXZ, CompressZstd} {
		// v3: xz and zstd operations made by the xz and zstd programs;
		// the name carries the operation sizes, which set the payload.
		payloads[c] = benchPayload(b, bin, cache, fmt.Sprintf("ext4-%d-%s-v3-xz%d-zstd%d.payload", mb, c, XZChunkSize>>20, ZstdChunkSize>>20), img, key, "--compression", c)
	}
	// REPLACE_ZSTD in 24 MiB operations with their own windows, for
	// engines from 2026-12 on (older ones accept 8 MiB windows).
	payloads[zstdLarge] = benchPayload(b, bin, cache, fmt.Sprintf("ext4-%d-zstd-v3-zstd24.payload", mb), img, key,
		"--compression", CompressZstd, "--chunk-size", strconv.Itoa(24<<20))
	// REPLACE_XZ and REPLACE_ZSTD made by the built-in encoders instead of
	// the programs (the defaults when installed), for their sizes.
	builtin := benchPayload(b, bin, cache, fmt.Sprintf("ext4-%d-xz-builtin-v3-xz%d.payload", mb, XZChunkSize>>20), img, key, "--xz-command", "builtin")
	zbuiltin := benchPayload(b, bin, cache, fmt.Sprintf("ext4-%d-zstd-builtin-v3-zstd%d.payload", mb, ZstdChunkSize>>20), img, key,
		"--compression", CompressZstd, "--zstd-command", "builtin")
	xzFile := filepath.Join(cache, fmt.Sprintf("ext4-%d.img.xz", mb))
	if _, err := os.Stat(xzFile); err != nil {
		sh(b, fmt.Sprintf("xz -T1 -6 -c %s > %s.tmp && mv %s.tmp %s", img, xzFile, xzFile, xzFile))
	}
	// SWUpdate's zstd artifact: one whole-image zstd -19 stream.
	zstFile := filepath.Join(cache, fmt.Sprintf("ext4-%d.img.zst", mb))
	if _, err := os.Stat(zstFile); err != nil {
		sh(b, fmt.Sprintf("zstd -q -T1 -19 -c %s > %s.tmp && mv %s.tmp %s", img, zstFile, zstFile, zstFile))
	}
	target := benchTarget(b, mb)
	size := float64(int64(mb) << 20)
	name := fmt.Sprintf("payload_%dMiB", mb)
	for _, f := range []string{img, xzFile, payloads[CompressNone], payloads[CompressXZ], payloads[CompressZstd], payloads[zstdLarge]} {
		sh(b, "cat "+f+" > /dev/null") // all inputs come from the page cache
	}
	best := func(f func() time.Duration) time.Duration {
		d := f()
		return min(d, f())
	}
	dd := best(func() time.Duration {
		return timeSh(b, fmt.Sprintf("dd if=%s of=%s bs=2M oflag=direct conv=notrunc status=none", img, target))
	})
	xzdd := best(func() time.Duration {
		return timeSh(b, fmt.Sprintf("xz -dc %s | dd of=%s bs=2M iflag=fullblock oflag=direct conv=notrunc status=none", xzFile, target))
	})
	mbps := func(d time.Duration) float64 { return size / 1e6 / d.Seconds() }
	testenv.Bench(b, name+"_dd_direct", mbps(dd), "MB/s")
	rate := sha256Rate()
	testenv.Bench(b, name+"_sha256_single_stream_vs_dd_direct", rate/mbps(dd), "x")
	testenv.Bench(b, name+"_xz_dc_dd_direct", mbps(xzdd), "MB/s")
	xzSize := fileSize(b, payloads[CompressXZ])
	testenv.Bench(b, name+"_xz_payload_size", float64(xzSize)/(1<<20), "MiB")
	testenv.Bench(b, name+"_xz_T1_file_size", float64(fileSize(b, xzFile))/(1<<20), "MiB")
	testenv.Bench(b, name+"_xz_payload_size_vs_xz6_stream", float64(xzSize)/float64(fileSize(b, xzFile)), "x")
	testenv.Bench(b, name+"_xz_builtin_payload_size_vs_default", float64(fileSize(b, builtin))/float64(xzSize), "x")
	testenv.Bench(b, name+"_xz_builtin_payload_size_vs_xz6_stream", float64(fileSize(b, builtin))/float64(fileSize(b, xzFile)), "x")
	zstSize := fileSize(b, payloads[CompressZstd])
	testenv.Bench(b, name+"_zstd_payload_size", float64(zstSize)/(1<<20), "MiB")
	testenv.Bench(b, name+"_zstd_19_file_size", float64(fileSize(b, zstFile))/(1<<20), "MiB")
	testenv.Bench(b, name+"_zstd_payload_size_vs_zstd19_stream", float64(zstSize)/float64(fileSize(b, zstFile)), "x")
	testenv.Bench(b, name+"_zstd_builtin_payload_size_vs_default", float64(fileSize(b, zbuiltin))/float64(zstSize), "x")
	testenv.Bench(b, name+"_zstd24_payload_size_vs_zstd19_stream", float64(fileSize(b, payloads[zstdLarge]))/float64(fileSize(b, zstFile)), "x")
	applied := map[string]time.Duration{}
	for _, c := range []string{CompressNone, CompressXZ, CompressZstd, zstdLarge} {
		var rss int64
		d := best(func() time.Duration {
			cmd := exec.Command(bin, "apply", "--direct", "--key", pub, "--target", target, payloads[c])
			syscall.Sync()
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("apply %s: %v\n%s", c, err, out)
			}
			d := time.Since(start)
			rss = max(rss, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) // KiB
			return d
		})
		n := name + "_" + map[string]string{CompressNone: "replace", CompressXZ: "xz", CompressZstd: "zstd", zstdLarge: "zstd24"}[c]
		applied[c] = d
		testenv.Bench(b, n+"_apply", mbps(d), "MB/s")
		testenv.Bench(b, n+"_peak_rss", float64(rss)/1024, "MiB")
		if c != CompressXZ {
			bound := verifyBound(b, payloads[c], size, rate, mbps(dd))
			testenv.Bench(b, n+"_verify_bound", bound, "MB/s")
			testenv.Bench(b, n+"_vs_verify_bound", mbps(d)/bound, "x")
		}
		switch c {
		case CompressNone, CompressZstd, zstdLarge:
			testenv.Bench(b, n+"_vs_dd_direct", dd.Seconds()/d.Seconds(), "x")
		case CompressXZ:
			testenv.Bench(b, n+"_vs_xz_dc_dd", xzdd.Seconds()/d.Seconds(), "x")
		}
		if c == CompressZstd {
			testenv.Bench(b, n+"_size_vs_xz", float64(fileSize(b, payloads[c]))/float64(xzSize), "x")
		}
		if c == zstdLarge {
			testenv.Bench(b, n+"_apply_vs_zstd_default", applied[CompressZstd].Seconds()/d.Seconds(), "x")
		}
	}
	if strings.HasPrefix(target, "/dev/") {
		benchThrottled(b, bin, target, name, img, pub, payloads, size)
	}
	got := sha(b, target)
	if want := sha(b, img); got != want {
		b.Fatalf("target %s after the last apply, want %s", got, want)
	}
}

// benchPayload returns the cached payload name in cache, generated from
// img with the extra generate flags when missing.
func benchPayload(b *testing.B, bin, cache, name, img, key string, flags ...string) string {
	p := filepath.Join(cache, name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	b.Logf("generating %s", p)
	args := append([]string{"generate", "--new", img, "--key", key, "-o", p}, flags...)
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		b.Fatalf("generate: %v\n%s", err, out)
	}
	return p
}

// zstdLarge names the payload of 24 MiB REPLACE_ZSTD operations.
const zstdLarge = "zstd24"

// throttledBPS is a disk slower than the verification bound, as most real
// disks are: a cloud volume or SATA SSD.
const throttledBPS = 300e6

// benchThrottled repeats dd and the REPLACE and zstd applies with the
// target's disk held to throttledBPS by a cgroup (as the daemon's writes
// are), to show where the apply stands against a disk slower than SHA-256.
func benchThrottled(b *testing.B, bin, target, name, img, pub string, payloads map[string]string, size float64) {
	l, err := cgroup.New(context.Background(), cgroup.Config{Name: "payload-bench", Device: target, WriteBPS: throttledBPS})
	if err != nil {
		b.Logf("no throttled figures: %v", err)
		return
	}
	defer l.Close()
	in := "echo $$ > " + filepath.Join(l.Dir(), "cgroup.procs") + " && exec "
	mbps := func(d time.Duration) float64 { return size / 1e6 / d.Seconds() }
	name += fmt.Sprintf("_throttled_%dMBps", int(throttledBPS/1e6))
	dd := timeSh(b, in+fmt.Sprintf("dd if=%s of=%s bs=2M oflag=direct conv=notrunc status=none", img, target))
	testenv.Bench(b, name+"_dd_direct", mbps(dd), "MB/s")
	for _, c := range []string{CompressNone, CompressZstd} {
		d := timeSh(b, in+fmt.Sprintf("%s apply --key %s --target %s %s >/dev/null", bin, pub, target, payloads[c]))
		n := name + "_" + map[string]string{CompressNone: "replace", CompressZstd: "zstd"}[c]
		testenv.Bench(b, n+"_apply", mbps(d), "MB/s")
		testenv.Bench(b, n+"_vs_dd_direct", dd.Seconds()/d.Seconds(), "x")
	}
}

// benchTarget returns where the payloads are applied: as root, slot B of
// a loop-attached disk image with direct I/O (a block device, so O_DIRECT
// as the daemon writes it); otherwise a file of mb MiB.
func benchTarget(b *testing.B, mb int) string {
	_, errL := exec.LookPath("losetup")
	_, errP := exec.LookPath("partx")
	if os.Geteuid() == 0 && errL == nil && errP == nil {
		_, dev := testenv.NewDiskLoop(b, testenv.DiskSpec{SlotSize: int64(mb) << 20})
		// Direct I/O on the backing file: writes reach the disk as they
		// would on a real one, not the page cache behind the loop device.
		if out, err := exec.Command("losetup", "--direct-io=on", dev).CombinedOutput(); err != nil {
			b.Logf("loop device without direct I/O (%v: %s): dd and the apply both end in the page cache", err, out)
		}
		part := dev + "p4" // USR-B
		if _, err := os.Stat(part); err == nil {
			return part
		}
		b.Logf("no %s after partx; applying to a file", part)
	}
	target := filepath.Join(b.TempDir(), "target")
	sh(b, fmt.Sprintf("dd if=/dev/zero of=%s bs=1M count=%d status=none", target, mb))
	return target
}

// sha256Rate is this machine's single-core SHA-256 speed in MB/s: the best
// of three runs over 64 MiB. The buffer is small on purpose: a child's peak
// RSS (ru_maxrss) starts at this process's, as Go's exec shares its memory
// until the child's execve.
func sha256Rate() float64 {
	buf := make([]byte, 4<<20)
	var best time.Duration
	for i := 0; i < 3; i++ {
		h := sha256.New()
		start := time.Now()
		for k := 0; k < 16; k++ {
			h.Write(buf)
		}
		h.Sum(nil)
		if d := time.Since(start); i == 0 || d < best {
			best = d
		}
	}
	return 16 * float64(len(buf)) / 1e6 / best.Seconds()
}

// verifyBound is the fastest a signed payload at path could be applied on
// this machine, in MB/s of partition, if hashing and writing (at ddRate,
// whose CPU time is the loop device's or the page cache's copy) were all
// it did: see BenchmarkApply. Decompression is not counted.
func verifyBound(b *testing.B, path string, partition, rate, ddRate float64) float64 {
	data := float64(fileSize(b, path)) / 1e6 // the metadata and signatures are noise
	partition /= 1e6
	cores := float64(runtime.GOMAXPROCS(0))
	cpu := (3*data+partition)/rate + partition/ddRate // op data, signed bytes, whole payload; partition; write
	secs := max(cpu/cores, max(data, partition)/rate)
	return partition / secs
}

// buildExt4 makes an ext4 image of mb MiB holding about 70% of it in
// files hard-linked (or copied) from /usr, in a fixed order.
func buildExt4(b *testing.B, img string, mb int) {
	stage, err := os.MkdirTemp(filepath.Dir(img), "stage-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(stage)
	budget := int64(mb) << 20 * 7 / 10
	errDone := fmt.Errorf("done")
	filepath.WalkDir("/usr", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Size() > budget {
			return nil
		}
		dst := filepath.Join(stage, p)
		if os.MkdirAll(filepath.Dir(dst), 0o755) != nil {
			return nil
		}
		if os.Link(p, dst) != nil && copyFile(p, dst) != nil {
			return nil
		}
		budget -= info.Size()
		if budget < 1<<20 {
			return errDone
		}
		return nil
	})
	sh(b, fmt.Sprintf("mkfs.ext4 -q -F -b 4096 -E root_owner=0:0 -d %s %s.tmp %dM && mv %s.tmp %s", stage, img, mb, img, img))
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func benchKey(b *testing.B, dir string) (string, string) {
	key, pub := filepath.Join(dir, "key.pem"), filepath.Join(dir, "key.pub.pem")
	if _, err := os.Stat(pub); err == nil {
		return key, pub
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	pb, _ := MarshalPublicKey(&k.PublicKey)
	os.WriteFile(key, MarshalPrivateKey(k), 0o600)
	os.WriteFile(pub, pb, 0o644)
	return key, pub
}

func sh(b *testing.B, script string) {
	b.Helper()
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// timeSh times script after a sync, so that no run pays for the dirty
// pages of the one before.
func timeSh(b *testing.B, script string) time.Duration {
	syscall.Sync()
	start := time.Now()
	sh(b, script)
	return time.Since(start)
}

func fileSize(b *testing.B, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}

func sha(b *testing.B, p string) string {
	out, err := exec.Command("sha256sum", p).Output()
	if err != nil {
		b.Fatal(err)
	}
	return string(bytes.Fields(out)[0])
}
