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
// the built-in encoder's, with a window the clients accept (8 MiB at
// most), is smaller, and a program whose output is wrong is caught at
// generation.
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
	if args := strings.Join(zstdCommandArgs(32<<20, 32<<20), " "); !strings.Contains(args, "wlog=23") {
		t.Errorf("zstd arguments for 32 MiB operations %q: want the window held to 8 MiB (wlog=23)", args)
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

// TestZstdLargeOps: zstd operations larger than 8 MiB (--chunk-size) keep
// an 8 MiB window, from either encoder, and so apply.
func TestZstdLargeOps(t *testing.T) {
	img := bytes.Repeat([]byte("compressible text of a filesystem image\n"), (9<<20)/40)
	img = img[:len(img)/blockSize*blockSize]
	cmds := []string{""}
	if _, err := exec.LookPath("zstd"); err == nil {
		cmds = append(cmds, "zstd")
	}
	for _, c := range cmds {
		p := generate(t, img, GenerateOptions{Compression: CompressZstd, ZstdCommand: c, ChunkSize: 12 << 20})
		f := targetFile(t, len(img))
		if _, err := Apply(context.Background(), bytes.NewReader(p), f, Options{}); err != nil {
			t.Fatalf("zstd command %q, 12 MiB operations: %v", c, err)
		}
		if !bytes.Equal(readAll(t, f, len(img)), img) {
			t.Fatalf("zstd command %q: target differs from the image", c)
		}
	}
}
