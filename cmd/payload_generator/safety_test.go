package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

// TestCLISignatureRequired: without --key, generate refuses unless
// --unsigned and apply refuses unless --insecure-skip-signature; the
// version given to generate is signed inside the payload and apply/verify
// --version require it.
func TestCLISignatureRequired(t *testing.T) {
	dir := t.TempDir()
	key, pub := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub.pem")
	mustRun(t, "keygen", "--private", key, "--public", pub)
	img, want := image(t, dir, "new.img", 5)
	signed, unsigned := filepath.Join(dir, "signed.bin"), filepath.Join(dir, "unsigned.bin")
	mustRun(t, "generate", "--new", img, "--key", key, "--version", "2.0.0", "-o", signed)
	tgt := func() string { return filepath.Join(t.TempDir(), "t.img") }
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		applied  bool // the target holds the image afterwards
	}{
		{"generate without key", []string{"generate", "--new", img, "-o", filepath.Join(dir, "x.bin")}, 2, "--unsigned", false},
		{"generate unsigned", []string{"generate", "--new", img, "--unsigned", "-o", unsigned}, 0, "ops", false},
		{"generate unsigned with key", []string{"generate", "--new", img, "--unsigned", "--key", key, "-o", filepath.Join(dir, "y.bin")}, 2, "--unsigned with --key", false},
		{"apply without key", []string{"apply", signed, "--target", tgt()}, 2, "--insecure-skip-signature", false},
		{"apply unsigned without key", []string{"apply", unsigned, "--target", tgt()}, 2, "--insecure-skip-signature", false},
		{"apply unsigned with key", []string{"apply", unsigned, "--key", pub, "--target", tgt()}, 1, "metadata signature missing", false},
		{"apply insecure", []string{"apply", unsigned, "--insecure-skip-signature", "--target", tgt()}, 0, "signature NOT CHECKED", true},
		{"apply signed", []string{"apply", signed, "--key", pub, "--target", tgt()}, 0, `version "2.0.0"`, true},
		{"apply right version", []string{"apply", signed, "--key", pub, "--version", "2.0.0", "--target", tgt()}, 0, "verified", true},
		{"apply other version", []string{"apply", signed, "--key", pub, "--version", "4.0.0", "--target", tgt()}, 1, `the payload is version "2.0.0", offered as "4.0.0"`, false},
		{"apply version of unversioned", []string{"apply", unsigned, "--insecure-skip-signature", "--version", "2.0.0", "--target", tgt()}, 1, "carries no version", false},
		{"verify other version", []string{"verify", signed, "--key", pub, "--version", "4.0.0"}, 1, "differs from the offered version", false},
		{"verify right version", []string{"verify", signed, "--key", pub, "--version", "2.0.0"}, 0, `version "2.0.0", signature verified`, false},
		{"show version", []string{"show", signed}, 0, "version: 2.0.0", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, o, e := run(t, nil, tc.args...)
			if code != tc.wantCode || !strings.Contains(o+e, tc.wantOut) {
				t.Fatalf("exit %d, want %d; output %q, want %q", code, tc.wantCode, o+e, tc.wantOut)
			}
			if tc.args[0] != "apply" {
				return
			}
			target := tc.args[len(tc.args)-1]
			got, err := os.ReadFile(target)
			if tc.applied && (err != nil || !bytes.Equal(got, want)) {
				t.Fatalf("target differs from the image (%v)", err)
			}
			if !tc.applied && len(got) != 0 {
				t.Fatalf("refused apply wrote %d bytes to the target", len(got))
			}
		})
	}
}

// TestCLIFileModes: the payload and its metadata are public (0644), not
// the temp file's 0600.
func TestCLIFileModes(t *testing.T) {
	p := signedPayload(t, 6, "--version", "1.0.0")
	out, key, pub := p.out, p.key, p.pub
	for _, f := range []struct {
		name string
		mode os.FileMode
	}{{out, 0o644}, {out + ".json", 0o644}, {key, 0o600}, {pub, 0o644}} {
		st, err := os.Stat(f.name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v, want %v", filepath.Base(f.name), st.Mode().Perm(), f.mode)
		}
	}
}

// TestCLIBusyDevice (root): apply to a loop partition holding a mounted
// file system, or to its whole disk, is refused and writes nothing; once
// unmounted the same apply works.
func TestCLIBusyDevice(t *testing.T) {
	p := signedPayload(t, 7)
	out, pub, want := p.out, p.pub, p.want
	_, dev := testenv.NewDiskLoop(t, testenv.DiskSpec{SlotSize: 4 << 20})
	part := dev + "p4"
	mnt, unmount := testenv.MountExt4(t, part)
	if err := os.WriteFile(filepath.Join(mnt, "file"), []byte("mounted data"), 0o644); err != nil {
		t.Fatal(err)
	}
	readPart := func() []byte { return readHead(t, part, len(want)) }
	before := readPart()
	for _, target := range []string{part, dev} {
		code, _, e := run(t, nil, "apply", out, "--key", pub, "--target", target)
		if code != 1 || !strings.Contains(e, "busy") {
			t.Fatalf("apply to %s with %s mounted: exit %d: %s", target, part, code, e)
		}
	}
	if !bytes.Equal(readPart(), before) {
		t.Fatal("a refused apply changed the mounted partition")
	}
	unmount()
	mustRun(t, "apply", out, "--key", pub, "--target", part)
	if !bytes.Equal(readPart(), want) {
		t.Fatal("partition differs from the image after apply")
	}
}

// signed is a key pair and a payload of an image signed with it.
type signed struct {
	key, pub string // private and public key files
	out      string // the payload
	want     []byte // the image
}

// signedPayload makes a key pair and a signed payload of a 1.5 MiB image
// (seed), with extra generate arguments.
func signedPayload(t *testing.T, seed uint64, gen ...string) signed {
	t.Helper()
	dir := t.TempDir()
	s := signed{key: filepath.Join(dir, "k.pem"), pub: filepath.Join(dir, "k.pub.pem"), out: filepath.Join(dir, "p.bin")}
	mustRun(t, "keygen", "--private", s.key, "--public", s.pub)
	var img string
	img, s.want = image(t, dir, "new.img", seed)
	mustRun(t, append([]string{"generate", "--new", img, "--key", s.key, "-o", s.out}, gen...)...)
	return s
}

// readHead returns the first n bytes of a file or device.
func readHead(t *testing.T, name string, n int) []byte {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}
