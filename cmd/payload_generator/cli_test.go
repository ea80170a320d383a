package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

func run(t *testing.T, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, bytes.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := run(t, nil, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errs)
	}
	return out
}

// image writes a deterministic 1.5 MiB image: text, random bytes, zeros.
func image(t *testing.T, dir, name string, seed uint64) (string, []byte) {
	return imageSize(t, dir, name, seed, 3<<19)
}

func imageSize(t *testing.T, dir, name string, seed uint64, size int) (string, []byte) {
	r := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, size)
	for i := 0; i < len(b)/3; i++ {
		b[i] = "abcdefgh \n"[r.IntN(10)]
	}
	for i := len(b) / 3; i < 2*len(b)/3; i++ {
		b[i] = byte(r.Uint32())
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	key, pub := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub.pem")
	mustRun(t, "keygen", "--private", key, "--public", pub)
	key2, pub2 := filepath.Join(dir, "k2.pem"), filepath.Join(dir, "k2.pub.pem")
	mustRun(t, "keygen", "--private", key2, "--public", pub2)
	img, want := image(t, dir, "new.img", 1)
	out := filepath.Join(dir, "update.gz")
	mustRun(t, "generate", "--new", img, "--key", key, "--version", "1.2.3", "-o", out)

	t.Run("metadata json", func(t *testing.T) {
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var md Metadata
		jb, err := os.ReadFile(out + ".json")
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(jb, &md); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		wantMD := Metadata{File: "update.gz", Version: "1.2.3", Size: int64(len(b)),
			SHA256: base64.StdEncoding.EncodeToString(sum[:]), SHA1: md.SHA1}
		if md != wantMD || md.SHA1 == "" {
			t.Fatalf("OUT.json = %+v, want %+v", md, wantMD)
		}
	})
	t.Run("show", func(t *testing.T) {
		s := mustRun(t, "show", out)
		for _, w := range []string{"major version:      2", `partition "root"`, "REPLACE_XZ", "(1 signature(s))", "minor version:      0 (full)"} {
			if !strings.Contains(s, w) {
				t.Errorf("show output lacks %q:\n%s", w, s)
			}
		}
	})

	tests := []struct {
		name     string
		args     []string
		stdin    bool
		wantCode int
		wantOut  string
	}{
		{"verify", []string{"verify", out, "--key", pub}, false, 0, "signature verified"},
		{"verify wrong key", []string{"verify", out, "--key", pub2}, false, 1, "metadata signature mismatch"},
		{"verify either key", []string{"verify", "--key", pub2, "--key", pub, out}, false, 0, "payload OK"},
		{"apply file", []string{"apply", out, "--key", pub, "--target", filepath.Join(dir, "t1.img")}, false, 0, "verified"},
		{"apply stdin", []string{"apply", "-", "--key", pub, "--target", filepath.Join(dir, "t2.img")}, true, 0, "verified"},
		{"apply direct", []string{"apply", out, "--direct", "--key", pub, "--target", filepath.Join(dir, "t3.img")}, false, 0, "verified"},
		{"verify target", []string{"verify", out, "--key", pub, "--target", filepath.Join(dir, "t1.img")}, false, 0, "target OK"},
		{"verify wrong target", []string{"verify", out, "--key", pub, "--target", out}, false, 1, "new partition hash mismatch"},
		{"no args", []string{}, false, 2, "usage"},
		{"unknown command", []string{"frobnicate"}, false, 2, "unknown command"},
		{"apply without target", []string{"apply", out}, false, 2, "--target"},
		{"generate without -o", []string{"generate", "--new", img}, false, 2, "need --new and -o"},
	}
	payload, _ := os.ReadFile(out)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in []byte
			if tc.stdin {
				in = payload
			}
			code, o, e := run(t, in, tc.args...)
			if code != tc.wantCode || !strings.Contains(o+e, tc.wantOut) {
				t.Fatalf("exit %d, want %d; output %q, want %q\n%s", code, tc.wantCode, o+e, tc.wantOut, e)
			}
			if tc.name == "apply file" || tc.name == "apply stdin" || tc.name == "apply direct" {
				got, err := os.ReadFile(tc.args[len(tc.args)-1])
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("target differs from the image (%v)", err)
				}
			}
		})
	}
}

func TestCLIVariants(t *testing.T) {
	dir := t.TempDir()
	key, pub := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub.pem")
	mustRun(t, "keygen", "--private", key, "--public", pub)
	oldImg, _ := imageSize(t, dir, "old.img", 2, 5<<20)
	newImg, want := imageSize(t, dir, "new.img", 2, 5<<20)
	want[100] ^= 1
	os.WriteFile(newImg, want, 0o644)
	tests := []struct {
		name      string
		gen       []string
		apply     []string
		wantCode  int
		wantInGen string
	}{
		{"zstd", []string{"--compression", "zstd"}, nil, 0, "REPLACE_ZSTD="},
		{"zstd strict", []string{"--compression", "zstd"}, []string{"--strict"}, 1, "REPLACE_ZSTD="},
		{"none", []string{"--compression", "none"}, nil, 0, "REPLACE="},
		{"v1", []string{"--major", "1"}, nil, 0, "REPLACE_BZ="},
		{"v1 none", []string{"--major", "1", "--compression", "none"}, nil, 0, "REPLACE="},
		{"delta", []string{"--old", oldImg}, []string{"--source", oldImg}, 0, "SOURCE_COPY="},
		{"delta without source", []string{"--old", oldImg}, nil, 1, "SOURCE_COPY="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "p.bin")
			g := mustRun(t, append([]string{"generate", "--new", newImg, "--key", key, "-o", out}, tc.gen...)...)
			if !strings.Contains(g, tc.wantInGen) {
				t.Errorf("generate output %q lacks %q", g, tc.wantInGen)
			}
			tgt := filepath.Join(t.TempDir(), "t.img")
			code, _, e := run(t, nil, append([]string{"apply", out, "--key", pub, "--target", tgt}, tc.apply...)...)
			if code != tc.wantCode {
				t.Fatalf("apply exit %d, want %d: %s", code, tc.wantCode, e)
			}
			if code == 0 {
				if got, _ := os.ReadFile(tgt); !bytes.Equal(got, want) {
					t.Fatal("target differs from the new image")
				}
			}
		})
	}
}

// TestCLILoopDevice applies to a real block device, O_DIRECT.
func TestCLILoopDevice(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "losetup")
	p := signedPayload(t, 4)
	out, pub, want := p.out, p.pub, p.want
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	dev := testenv.LoopDevice(t, disk)
	mustRun(t, "apply", out, "--key", pub, "--target", dev)
	if !bytes.Equal(readHead(t, dev, len(want)), want) {
		t.Fatal("device differs from the image")
	}
	mustRun(t, "verify", out, "--key", pub, "--target", dev)
}

// TestCLIProcedures: --kernel and --pcr-policy make a major 1 payload
// carry Flatcar's KERNEL and PCR_POLICY procedures, which show lists with
// the files' sizes and hashes and apply verifies (and drops); they are
// refused for major 2.
func TestCLIProcedures(t *testing.T) {
	dir := t.TempDir()
	key, pub := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub.pem")
	mustRun(t, "keygen", "--private", key, "--public", pub)
	newImg, img := image(t, dir, "new.img", 4)
	kernel, kb := imageSize(t, dir, "vmlinuz", 5, 300<<10+7)
	policy, pb := imageSize(t, dir, "pcrs.zip", 6, 999)
	out := filepath.Join(dir, "p.bin")
	mustRun(t, "generate", "--major", "1", "--new", newImg, "--kernel", kernel, "--pcr-policy", policy, "--key", key, "-o", out)
	show := mustRun(t, "show", out)
	ks, ps := sha256.Sum256(kb), sha256.Sum256(pb)
	for _, want := range []string{
		"procedure KERNEL: ", fmt.Sprintf("new: size %d sha256 %x", len(kb), ks),
		"procedure PCR_POLICY: 1 ops", fmt.Sprintf("new: size %d sha256 %x", len(pb), ps),
	} {
		if !strings.Contains(show, want) {
			t.Errorf("show output lacks %q:\n%s", want, show)
		}
	}
	tgt := filepath.Join(t.TempDir(), "t.img")
	mustRun(t, "apply", out, "--key", pub, "--target", tgt)
	if got, _ := os.ReadFile(tgt); !bytes.Equal(got, img) {
		t.Fatal("target differs from the new image")
	}
	if code, _, e := run(t, nil, "generate", "--new", newImg, "--kernel", kernel, "--key", key, "-o", filepath.Join(dir, "v2.bin")); code == 0 {
		t.Fatalf("--kernel with major 2 accepted: %s", e)
	}
}
