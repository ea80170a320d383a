package payload

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

// TestZstdCommand: REPLACE_ZSTD data made by the zstd program applies like
// the built-in encoder's, with the operation's window (32 MiB at most), is
// smaller, and a program whose output is wrong is caught at generation.
func TestZstdCommand(t *testing.T) {
	testenv.RequireTool(t, "zstd")
	img := testImage(4<<20, 14)
	k := keys(t, 1)
	builtin := generate(t, img, GenerateOptions{Keys: k, Compression: CompressZstd})
	libzstd := generate(t, img, GenerateOptions{Keys: k, Compression: CompressZstd, ZstdCommand: "zstd"})
	if len(libzstd) >= len(builtin) {
		t.Errorf("zstd program payload %d bytes, built-in %d: not smaller", len(libzstd), len(builtin))
	}
	t.Logf("payload: built-in encoder %d bytes, zstd program %d (%.2fx)", len(builtin), len(libzstd), float64(len(libzstd))/float64(len(builtin)))
	counts, _ := opCounts(t, libzstd)
	if counts[OpReplaceZstd] == 0 {
		t.Fatalf("no REPLACE_ZSTD op: %v", counts)
	}
	f := targetFile(t, len(img))
	if _, err := Apply(context.Background(), bytes.NewReader(libzstd), f, Options{Keys: pubs(k[0])}); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, f, len(img)); !bytes.Equal(got, img) {
		t.Fatal("target differs from the image")
	}
	for _, c := range []struct {
		chunk int
		wlog  string
	}{{8 << 20, "wlog=23"}, {24 << 20, "wlog=25"}, {64 << 20, "wlog=25"}} {
		if args := strings.Join(zstdCommandArgs(c.chunk, c.chunk), " "); !strings.Contains(args, c.wlog) {
			t.Errorf("zstd arguments for %d MiB operations %q: want %s", c.chunk>>20, args, c.wlog)
		}
	}

	bad := filepath.Join(t.TempDir(), "bad-zstd")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\ntr a b | zstd \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Generate(context.Background(), io.Discard, GenerateOptions{Compression: CompressZstd, ZstdCommand: bad,
		New: bytes.NewReader(img), NewSize: int64(len(img)), TempDir: t.TempDir()})
	if !errors.Is(err, ErrGenerate) || !strings.Contains(err.Error(), "does not decode to its input") {
		t.Errorf("lossy program: %v, want ErrGenerate saying its output is wrong", err)
	}
}

// TestZstdLargeOps: zstd operations larger than maxZstdWindow
// (--chunk-size) keep a 32 MiB window, from either encoder, and so apply;
// a frame whose window is larger is refused.
func TestZstdLargeOps(t *testing.T) {
	img := bytes.Repeat([]byte("compressible text of a filesystem image\n"), (40<<20)/40)
	img = img[:len(img)/blockSize*blockSize]
	cmds := []string{""}
	if _, err := exec.LookPath("zstd"); err == nil {
		cmds = append(cmds, "zstd")
	}
	for _, c := range cmds {
		p := generate(t, img, GenerateOptions{Compression: CompressZstd, ZstdCommand: c, ChunkSize: 40 << 20})
		f := targetFile(t, len(img))
		if _, err := Apply(context.Background(), bytes.NewReader(p), f, Options{}); err != nil {
			t.Fatalf("zstd command %q, 40 MiB operations: %v", c, err)
		}
		if !bytes.Equal(readAll(t, f, len(img)), img) {
			t.Fatalf("zstd command %q: target differs from the image", c)
		}
	}
	if len(cmds) < 2 {
		return
	}
	// A 64 MiB window (no size known in advance: not single-segment).
	cmd := exec.Command("zstd", "-q", "-3", "--zstd=wlog=26", "--no-check", "-c")
	cmd.Stdin = bytes.NewReader(img)
	big, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeZstd(big, make([]byte, len(img))); err == nil || !strings.Contains(err.Error(), "window") {
		t.Fatalf("64 MiB window: %v, want refused", err)
	}
}
