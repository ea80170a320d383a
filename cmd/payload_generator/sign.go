package main

import (
	"context"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/abupdate/update_engine/pkg/payload"
)

// generateSigning checks generate's signing flags and returns the
// signature sizes to reserve (nil unless --out-hash).
func generateSigning(keys, unsigned bool, outHash, outMetaHash string, major uint64, sizes string, fs *flag.FlagSet) ([]int, error) {
	sizeSet := false
	fs.Visit(func(f *flag.Flag) { sizeSet = sizeSet || f.Name == "signature-size" })
	switch {
	case outHash == "" && (outMetaHash != "" || sizeSet):
		return nil, fmt.Errorf("%w: --out-metadata-hash and --signature-size need --out-hash", errUsage)
	case outHash != "" && (keys || unsigned):
		return nil, fmt.Errorf("%w: --out-hash (sign later) with --key or --unsigned", errUsage)
	case outHash == "" && !keys && !unsigned:
		return nil, fmt.Errorf("%w: %w", errUsage, errNoSigningKey)
	case keys && unsigned:
		return nil, fmt.Errorf("%w: --unsigned with --key", errUsage)
	case outHash == "":
		return nil, nil
	case major == 1 && outMetaHash != "":
		return nil, fmt.Errorf("%w: --out-metadata-hash: a major version 1 payload has no metadata signature", errUsage)
	case major != 1 && outMetaHash == "":
		return nil, fmt.Errorf("%w: --out-hash with --major 2 needs --out-metadata-hash too (its metadata is signed separately)", errUsage)
	}
	var out []int
	for _, f := range strings.Split(sizes, ":") {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%w: --signature-size %q: want sizes in bytes, colon-separated (256:512)", errUsage, sizes)
		}
		out = append(out, n)
	}
	return out, nil
}

// cmdSign puts signatures made elsewhere into a payload written with
// generate --out-hash, then updates PAYLOAD.json (if any) to the signed
// payload's hashes. The payload is replaced atomically: a refused or
// failed sign leaves it as it was.
func cmdSign(_ context.Context, args []string, _ io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("sign", flag.ContinueOnError)
	var sigs, metaSigs, keys multiFlag
	fs.Var(&sigs, "signature", "raw payload signature (e.g. from openssl pkeyutl) of the --out-hash digest; repeat per key, oldest key first")
	fs.Var(&metaSigs, "metadata-signature", "major 2: raw signature of the --out-metadata-hash digest; repeat per key, in the same order")
	fs.Var(&keys, "key", "public key PEM: refuse signatures that do not verify with it (repeatable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || len(sigs) == 0 {
		return fmt.Errorf("%w: need PAYLOAD and --signature", errUsage)
	}
	ps, err := readFiles(sigs)
	if err != nil {
		return err
	}
	ms, err := readFiles(metaSigs)
	if err != nil {
		return err
	}
	pk, err := loadPublicKeys(keys)
	if err != nil {
		return err
	}
	name := pos[0]
	src, err := os.Open(name)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp, err := os.CreateTemp(filepath.Dir(name), ".payload-sign-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	size, err := copySigned(tmp, src, ps, ms, pk)
	if err != nil {
		return err
	}
	h256, h1 := sha256.New(), sha1.New()
	if _, err := io.Copy(io.MultiWriter(h256, h1), io.NewSectionReader(tmp, 0, size)); err != nil {
		return err
	}
	md, err := signedMetadata(name, size, h256.Sum(nil), h1.Sum(nil))
	if err != nil {
		return err
	}
	if err := publish(tmp, name, md); err != nil {
		return err
	}
	checked := "NOT CHECKED (no --key): clients verify them"
	if len(pk) > 0 {
		checked = fmt.Sprintf("verified with %d key(s)", len(pk))
	}
	fmt.Fprintf(stdout, "%s: %d payload and %d metadata signature(s) inserted, %s; sha256 %s\n",
		name, len(ps), len(ms), checked, base64.StdEncoding.EncodeToString(h256.Sum(nil)))
	return nil
}

// readFiles reads each file whole.
func readFiles(files []string) ([][]byte, error) {
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// copySigned copies the payload src to tmp and puts the signatures into
// the copy (checked with pk, when given); it returns the copy's size.
func copySigned(tmp *os.File, src io.Reader, ps, ms [][]byte, pk []*rsa.PublicKey) (int64, error) {
	size, err := io.Copy(tmp, src)
	if err != nil {
		return 0, err
	}
	if _, err := payload.InsertSignatures(tmp, size, ps, ms, pk); err != nil {
		return 0, err
	}
	return size, nil
}

// signedMetadata is name.json, if there is one, made to describe the
// signed payload (nil when there is none). It is read and checked before
// the payload is replaced.
func signedMetadata(name string, size int64, h256, h1 []byte) (*Metadata, error) {
	jb, err := os.ReadFile(name + ".json")
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, err
	}
	md := &Metadata{}
	if err := json.Unmarshal(jb, md); err != nil {
		return nil, fmt.Errorf("%s.json: %w", name, err)
	}
	md.Size = size
	md.SHA256 = base64.StdEncoding.EncodeToString(h256)
	md.SHA1 = base64.StdEncoding.EncodeToString(h1)
	return md, nil
}
