package payload

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/pkg/bsdiff"
)

func TestZZOp(t *testing.T) {
	D := "/tmp/abupdate-delta-bench-v1-1024/"
	lines, _ := os.ReadFile("/work/delta-logs/d1024-base.payload.ops")
	n, _ := strconv.Atoi(os.Getenv("OPLINE"))
	f := strings.Fields(strings.Split(string(lines), "\n")[n-1])
	var dst []uint32
	for _, e := range f[2:] {
		a, b, _ := strings.Cut(e, ":")
		s, _ := strconv.Atoi(a)
		k, _ := strconv.Atoi(b)
		for i := s; i < s+k; i++ {
			dst = append(dst, uint32(i))
		}
	}
	newImg, _ := os.ReadFile(D + "new.img")
	oldImg, _ := os.ReadFile(D + "old.img")
	var nw []byte
	for _, b := range dst {
		nw = append(nw, newImg[int(b)*4096:int(b+1)*4096]...)
	}
	owner := blockOwners(t, D+"new.img", dst)
	var paths []string
	for _, b := range dst {
		if p := owner[b]; p != "" && !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	ob := fileBlocks(t, D+"old.img", paths)
	var old []byte
	missing := 0
	for _, p := range paths {
		if ob[p] == nil {
			missing++
		}
		for _, b := range ob[p] {
			old = append(old, oldImg[int(b)*4096:int(b+1)*4096]...)
		}
	}
	t.Logf("op %s %s: %d dst blocks, %d files (%d not in old), old files %d blocks", f[0], f[1], len(dst), len(paths), missing, len(old)/4096)
	var raw, br bytes.Buffer
	if err := bsdiff.Diff(context.Background(), old, nw, &raw, bsdiff.Options{Format: bsdiff.BSDF2None}); err != nil {
		t.Fatal(err)
	}
	s, _ := splitRawPatch(raw.Bytes())
	p, _ := recompress(&br, s, bsdiffBrotli, len(nw))
	t.Logf("file-aware brotli bsdiff: %d B (ctrl %d diff %d extra %d raw)", len(p), len(s[0]), len(s[1]), len(s[2]))
	os.WriteFile("/tmp/dbg/o", old, 0o644)
	os.WriteFile("/tmp/dbg/n", nw, 0o644)
	out, _ := exec.Command("sh", "-c", "zstd -q -f -19 --long=31 --patch-from=/tmp/dbg/o /tmp/dbg/n -o /tmp/dbg/z && stat -c %s /tmp/dbg/z && xz -9e -c /tmp/dbg/n | wc -c").CombinedOutput()
	t.Logf("zstd patch / xz: %s", out)
}
