package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// openssl runs the real openssl binary (Debian package openssl).
func openssl(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("SKIP: openssl not installed (Debian package openssl; scripts/deps.sh)")
	}
	if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
}

// opensslKey makes an RSA key pair with openssl; it returns the private
// and public PEM paths.
func opensslKey(t *testing.T, dir, name string, bits string) (string, string) {
	priv, pub := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub.pem")
	openssl(t, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:"+bits, "-out", priv)
	openssl(t, "pkey", "-in", priv, "-pubout", "-out", pub)
	return priv, pub
}

// opensslSign signs a digest file as a release team's HSM would.
func opensslSign(t *testing.T, key, digest, out string) string {
	openssl(t, "pkeyutl", "-sign", "-inkey", key, "-pkeyopt", "digest:sha256", "-pkeyopt", "rsa_padding_mode:pkcs1", "-in", digest, "-out", out)
	return out
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTwoStepSigning: generate --out-hash, sign the digests with openssl
// pkeyutl, insert them with sign, and apply and verify through the usual
// paths; for both payload majors and with two keys of different sizes.
func TestTwoStepSigning(t *testing.T) {
	dir := t.TempDir()
	oldKey, oldPub := opensslKey(t, dir, "old", "2048")
	newKey, newPub := opensslKey(t, dir, "new", "3072")
	img, want := image(t, dir, "new.img", 7)

	t.Run("major 2, two keys", func(t *testing.T) {
		out := filepath.Join(dir, "v2.bin")
		h, mh := filepath.Join(dir, "v2.hash"), filepath.Join(dir, "v2.mhash")
		stdout := mustRun(t, "generate", "--new", img, "--version", "2.0", "--out-hash", h, "--out-metadata-hash", mh,
			"--signature-size", "256:384", "-o", out)
		if !strings.Contains(stdout, "NOT SIGNED YET") {
			t.Errorf("generate --out-hash does not say the payload is unsigned: %q", stdout)
		}
		if len(readFile(t, h)) != 32 || len(readFile(t, mh)) != 32 {
			t.Fatalf("digest files are not 32-byte SHA-256 digests")
		}
		// The placeholders never verify: fail closed before signing.
		target := filepath.Join(dir, "v2.target")
		if code, _, errs := run(t, nil, "apply", out, "--key", newPub, "--target", target); code != 1 || !strings.Contains(errs, "signature mismatch") {
			t.Fatalf("apply of the unsigned placeholder payload: exit %d, %q; want a signature mismatch", code, errs)
		}
		sigs := []string{
			"--signature", opensslSign(t, oldKey, h, filepath.Join(dir, "v2.old.sig")),
			"--signature", opensslSign(t, newKey, h, filepath.Join(dir, "v2.new.sig")),
			"--metadata-signature", opensslSign(t, oldKey, mh, filepath.Join(dir, "v2.old.msig")),
			"--metadata-signature", opensslSign(t, newKey, mh, filepath.Join(dir, "v2.new.msig")),
		}
		mustRun(t, append([]string{"sign", out, "--key", oldPub, "--key", newPub}, sigs...)...)
		// Each key alone accepts the payload, as the old and new fleet would.
		for _, pub := range []string{oldPub, newPub} {
			os.Remove(target)
			mustRun(t, "apply", out, "--key", pub, "--version", "2.0", "--target", target)
			if !bytes.Equal(readFile(t, target), want) {
				t.Fatalf("applied image with key %s differs from the new image", filepath.Base(pub))
			}
			if v := mustRun(t, "verify", out, "--key", pub); !strings.Contains(v, "signature verified") {
				t.Errorf("verify: %q", v)
			}
		}
		// OUT.json follows the signed payload (the Omaha server checks it).
		var md Metadata
		if err := json.Unmarshal(readFile(t, out+".json"), &md); err != nil {
			t.Fatal(err)
		}
		b := readFile(t, out)
		sum := sha256.Sum256(b)
		if md.SHA256 != base64.StdEncoding.EncodeToString(sum[:]) || md.Size != int64(len(b)) || md.Version != "2.0" {
			t.Errorf("%s.json = %+v, does not describe the signed payload", out, md)
		}
	})

	t.Run("major 1", func(t *testing.T) {
		out := filepath.Join(dir, "v1.bin")
		h := filepath.Join(dir, "v1.hash")
		mustRun(t, "generate", "--major", "1", "--new", img, "--out-hash", h, "-o", out)
		mustRun(t, "sign", out, "--signature", opensslSign(t, oldKey, h, filepath.Join(dir, "v1.sig")))
		target := filepath.Join(dir, "v1.target")
		mustRun(t, "apply", out, "--key", oldPub, "--target", target)
		if !bytes.Equal(readFile(t, target), want) {
			t.Fatal("applied image differs from the new image")
		}
	})

	t.Run("refused", func(t *testing.T) {
		out := filepath.Join(dir, "bad.bin")
		h, mh := filepath.Join(dir, "bad.hash"), filepath.Join(dir, "bad.mhash")
		mustRun(t, "generate", "--new", img, "--out-hash", h, "--out-metadata-hash", mh, "-o", out)
		before := readFile(t, out)
		good := opensslSign(t, oldKey, h, filepath.Join(dir, "bad.good.sig"))
		goodMeta := opensslSign(t, oldKey, mh, filepath.Join(dir, "bad.good.msig"))
		// Signatures swapped: each signs the other digest.
		swapped := []string{"sign", out, "--signature", goodMeta, "--metadata-signature", good}
		garbage := filepath.Join(dir, "garbage.sig")
		if err := os.WriteFile(garbage, []byte("not a signature"), 0o644); err != nil {
			t.Fatal(err)
		}
		big := opensslSign(t, newKey, h, filepath.Join(dir, "bad.big.sig")) // 384 bytes where 256 are reserved
		for _, c := range []struct {
			args []string
			want string
		}{
			{append(swapped, "--key", oldPub), "signature mismatch"},
			{[]string{"sign", out, "--signature", garbage, "--metadata-signature", goodMeta}, "payload signature 1 is 15 bytes, the payload reserves 256"},
			{[]string{"sign", out, "--signature", big, "--metadata-signature", goodMeta}, "reserves 256"},
			{[]string{"sign", out, "--signature", good}, "1 payload signature(s) but 0 metadata signature(s)"},
			{[]string{"sign", out, "--signature", good, "--signature", good, "--metadata-signature", goodMeta, "--metadata-signature", goodMeta}, "2 payload signature(s) given, the payload reserves 1"},
		} {
			code, _, errs := run(t, nil, c.args...)
			if code != 1 || !strings.Contains(errs, c.want) {
				t.Errorf("%v: exit %d, %q; want exit 1 and %q", c.args[2:], code, errs, c.want)
			}
			if !bytes.Equal(readFile(t, out), before) {
				t.Fatalf("%v: a refused sign changed the payload", c.args[2:])
			}
		}
		// Without --key, sign cannot check; the clients refuse it.
		mustRun(t, swapped...)
		code, _, errs := run(t, nil, "apply", out, "--key", oldPub, "--target", filepath.Join(dir, "bad.target"))
		if code != 1 || !strings.Contains(errs, "metadata signature mismatch") {
			t.Errorf("apply of a wrongly signed payload: exit %d, %q; want a metadata signature mismatch", code, errs)
		}
		// A payload signed in one step has no room for other signatures.
		code, _, errs = run(t, nil, "generate", "--new", img, "--out-hash", h, "--key", oldKey, "-o", out)
		if code != 2 || !strings.Contains(errs, "--out-hash (sign later) with --key") {
			t.Errorf("generate --out-hash --key: exit %d, %q", code, errs)
		}
	})
}
