package bsdiff

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

// realPair returns two related real binaries: a program and the same
// program with a region rewritten and a block inserted, as a rebuild
// moves code.
func realPair(t testing.TB) pair {
	t.Helper()
	old, err := os.ReadFile("/usr/bin/bspatch")
	if err != nil {
		t.Skipf("no /usr/bin/bspatch: %v", err)
	}
	nw := bytes.Clone(old)
	for i := len(nw) / 3; i < len(nw)/3+500; i += 7 {
		nw[i] ^= 0x5a
	}
	nw = append(nw[:len(nw)/2:len(nw)/2], append(old[:2000:2000], nw[len(nw)/2:]...)...)
	return pair{"bspatch binary", old, nw}
}

// largePair is big enough (2.5 MB) for multi-block bzip2 streams.
func largePair() pair {
	r := rand.New(rand.NewPCG(11, 12))
	old := textish(r, 2500000)
	nw := rebuild(old, 2)
	return pair{"large rebuilt", old, nw}
}

// siblingPair is two different programs built from one source package.
func siblingPair(t testing.TB) pair {
	t.Helper()
	old, err := os.ReadFile("/usr/bin/bsdiff")
	must(t, err)
	nw, err := os.ReadFile("/usr/bin/bspatch")
	must(t, err)
	return pair{"bsdiff to bspatch", old, nw}
}

// TestDebianCrossCheck applies our BSDIFF40 patches with Debian's bspatch
// and Debian's bsdiff patches with our reader.
func TestDebianCrossCheck(t *testing.T) {
	testenv.RequireTool(t, "bsdiff", "bspatch")
	ctx := context.Background()
	ps := append(pairs(), realPair(t), siblingPair(t), largePair())
	for _, p := range ps {
		t.Run(p.name, func(t *testing.T) {
			dir := t.TempDir()
			oldF, newF := filepath.Join(dir, "old"), filepath.Join(dir, "new")
			ourPatch, debPatch := filepath.Join(dir, "our.patch"), filepath.Join(dir, "deb.patch")
			outF := filepath.Join(dir, "out")
			must(t, os.WriteFile(oldF, p.old, 0o644))
			must(t, os.WriteFile(newF, p.new, 0o644))

			var patch bytes.Buffer
			must(t, Diff(ctx, p.old, p.new, &patch, Options{Format: BSDIFF40}))
			must(t, os.WriteFile(ourPatch, patch.Bytes(), 0o644))
			run(t, "bspatch", oldF, outF, ourPatch)
			got, err := os.ReadFile(outF)
			must(t, err)
			if !bytes.Equal(got, p.new) {
				t.Fatalf("Debian bspatch applied our patch to %d bytes, want %d (equal=false)", len(got), len(p.new))
			}

			if len(p.old) == 0 || len(p.new) == 0 {
				// Debian's bsdiff mmaps its inputs and fails on empty files.
				t.Logf("skipping Debian bsdiff: empty input")
				return
			}
			run(t, "bsdiff", oldF, newF, debPatch)
			deb, err := os.ReadFile(debPatch)
			must(t, err)
			var out bytes.Buffer
			if _, err := Apply(ctx, bytes.NewReader(p.old), int64(len(p.old)), deb, &out); err != nil {
				t.Fatalf("Apply(Debian patch): %v", err)
			}
			if !bytes.Equal(out.Bytes(), p.new) {
				t.Fatalf("Apply(Debian patch) gave %d bytes, want %d", out.Len(), len(p.new))
			}
			t.Logf("patch sizes: ours %d, Debian %d", patch.Len(), len(deb))
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}
