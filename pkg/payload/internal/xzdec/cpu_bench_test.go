package xzdec

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
)

// realData is about n bytes of files under /usr/lib, concatenated in a
// fixed order (executables, libraries, text): what REPLACE_XZ carries.
// BENCH_XZ_INPUT names a file to use instead.
func realData(b *testing.B, n int) []byte {
	if p := os.Getenv("BENCH_XZ_INPUT"); p != "" {
		d, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	out := make([]byte, 0, n)
	filepath.WalkDir("/usr/lib", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || len(out) >= n {
			return nil
		}
		if info, err := d.Info(); err != nil || info.Size() > 8<<20 {
			return nil
		}
		if f, err := os.ReadFile(p); err == nil {
			out = append(out, f[:min(len(f), n-len(out))]...)
		}
		return nil
	})
	return out
}

// threadCPU is the CPU time of the calling OS thread.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDecodeCPU compares the decoder's CPU time per GiB of output
// with liblzma's (`xz -dc`, user+system time of the child) on the same
// xz -6 stream of real files, single core each; best of three.
func BenchmarkDecodeCPU(b *testing.B) {
	testenv.RequireTool(b, "xz")
	data := realData(b, 48<<20)
	enc := liblzma(b, data, "-6", "--check=crc32", "-T1")
	out := make([]byte, len(data))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var ours, theirs time.Duration
	for i := 0; i < 3; i++ {
		start := threadCPU()
		n, err := Decode(enc, out)
		d := threadCPU() - start
		if err != nil || !bytes.Equal(out[:n], data) {
			b.Fatalf("decode: %v", err)
		}
		if i == 0 || d < ours {
			ours = d
		}
		cmd := exec.Command("xz", "-dc", "-T1")
		cmd.Stdin = bytes.NewReader(enc)
		var sink countWriter
		cmd.Stdout = &sink
		if err := cmd.Run(); err != nil || int(sink) != len(data) {
			b.Fatalf("xz -dc: %v (%d bytes)", err, sink)
		}
		if d := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(); i == 0 || d < theirs {
			theirs = d
		}
	}
	gib := float64(len(data)) / (1 << 30)
	testenv.Bench(b, "xzdec_cpu_per_gib", ours.Seconds()/gib, "s")
	testenv.Bench(b, "xz_dc_cpu_per_gib", theirs.Seconds()/gib, "s")
	testenv.Bench(b, "xzdec_cpu_vs_xz_dc", ours.Seconds()/theirs.Seconds(), "x")
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }
