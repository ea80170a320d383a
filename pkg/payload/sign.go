package payload

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// Signing a payload. Both signatures are RSASSA-PKCS1-v1_5 over a SHA-256
// digest (SPEC.md "Signature"):
//
//   - the payload signature signs [0, metadata_size) ‖ the data blobs up to
//     signatures_offset: header and manifest, never the v2 metadata
//     signature, never the payload signature itself;
//   - the v2 metadata signature signs [0, metadata_size).
//
// The header (metadata_signature_size) and the manifest (signatures_offset,
// signatures_size and, v1, the no-op operation covering the blob) hold the
// signature blobs' lengths, so those lengths are fixed before anything is
// hashed. A Signatures blob's length depends only on its signatures'
// lengths (keys.go signaturesBlob), which is how a payload can be written
// with zero placeholders of the right sizes (GenerateOptions.SignatureSizes),
// its digests signed elsewhere (an HSM, `openssl pkeyutl`), and the
// signatures put in place by InsertSignatures without changing a hashed
// byte: ChromeOS's delta_generator --out_hash_file / --signature_size /
// --payload_signature_file flow.

// ErrSign: signatures that cannot go into this payload (wrong count or
// size, an unsigned payload, a payload that does not end where its
// signature does).
var ErrSign = errors.New("payload: cannot insert signatures")

// signer fills a payload's signature blobs: with keys it signs; without,
// it writes zero placeholders of sizes.
type signer struct {
	keys  []*rsa.PrivateKey
	sizes []int
}

// placeholders returns zero signatures of the sizes the blob holds.
func (s signer) placeholders() [][]byte {
	var sigs [][]byte
	for _, k := range s.keys {
		sigs = append(sigs, make([]byte, k.Size()))
	}
	if len(s.keys) == 0 {
		for _, n := range s.sizes {
			sigs = append(sigs, make([]byte, n))
		}
	}
	return sigs
}

// blobSize is the length of the Signatures blob (0 = unsigned).
func (s signer) blobSize() (int, error) {
	sigs := s.placeholders()
	if len(sigs) == 0 {
		return 0, nil
	}
	b, err := signaturesBlob(sigs)
	return len(b), err
}

// blob returns the Signatures blob for digest: signed by the keys, or
// placeholders.
func (s signer) blob(digest []byte) ([]byte, error) {
	sigs := s.placeholders()
	for i, k := range s.keys {
		sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest)
		if err != nil {
			return nil, fmt.Errorf("payload: sign: %w", err)
		}
		sigs[i] = sig
	}
	return signaturesBlob(sigs)
}

// Digests are the SHA-256 digests a payload's signatures sign.
type Digests struct {
	Payload  []byte // over [0, metadata_size) and the blobs up to signatures_offset
	Metadata []byte // over [0, metadata_size); nil for major version 1
}

// ReadDigests reads the payload in r (from its start) and returns the
// digests its signatures sign, with its parsed metadata. The payload must
// reserve a signature (signatures_size > 0).
func ReadDigests(r io.ReaderAt) (*Digests, *Metadata, error) {
	m, err := ReadMetadata(io.NewSectionReader(r, 0, 1<<62))
	if err != nil {
		return nil, nil, err
	}
	if m.SignaturesSize == 0 {
		return nil, m, fmt.Errorf("%w: the payload reserves no signature (generate it with --out-hash, or --key)", ErrSign)
	}
	meta := m.Raw[:m.MetadataSize()]
	h := sha256.New()
	h.Write(meta)
	if _, err := io.Copy(h, io.NewSectionReader(r, int64(m.DataStart()), int64(m.SignaturesOffset))); err != nil {
		return nil, m, fmt.Errorf("payload: read data blobs: %w", err)
	}
	d := &Digests{Payload: h.Sum(nil)}
	if m.Major == 2 {
		md := sha256.Sum256(meta)
		d.Metadata = md[:]
	}
	return d, m, nil
}

// InsertSignatures writes signatures made elsewhere into the payload in f,
// whose placeholders (or earlier signatures) they replace: payloadSigs
// sign the payload digest, metadataSigs (major version 2 only, one per
// payload signature) the metadata digest, both in key order, oldest key
// first. Each must have the length reserved for it. With keys, every
// signature must verify with one of them (so a wrong or garbage signature
// is refused here rather than by every client); without keys nothing is
// checked beyond lengths. f's size must be the payload's. Nothing is
// written unless every check passes.
func InsertSignatures(f interface {
	io.ReaderAt
	io.WriterAt
}, size int64, payloadSigs, metadataSigs [][]byte, keys []*rsa.PublicKey) (*Digests, error) {
	d, m, err := ReadDigests(f)
	if err != nil {
		return nil, err
	}
	if want := int64(m.DataStart() + m.SignaturesOffset + m.SignaturesSize); size != want {
		return nil, fmt.Errorf("%w: the file is %d bytes, the payload %d: it must end with its signature", ErrSign, size, want)
	}
	old := make([]byte, m.SignaturesSize)
	if _, err := f.ReadAt(old, int64(m.DataStart()+m.SignaturesOffset)); err != nil {
		return nil, fmt.Errorf("payload: read signature blob: %w", err)
	}
	sb, err := fitSignatures(old, payloadSigs, "payload")
	if err != nil {
		return nil, err
	}
	var mb []byte
	switch {
	case m.Major == 1 && len(metadataSigs) > 0:
		return nil, fmt.Errorf("%w: a major version 1 payload has no metadata signature", ErrSign)
	case m.Major == 2:
		if len(metadataSigs) != len(payloadSigs) {
			return nil, fmt.Errorf("%w: %d payload signature(s) but %d metadata signature(s): a major version 2 payload needs one of each per key",
				ErrSign, len(payloadSigs), len(metadataSigs))
		}
		if mb, err = fitSignatures(m.MetadataSignature(), metadataSigs, "metadata"); err != nil {
			return nil, err
		}
	}
	if len(keys) > 0 {
		for i, s := range payloadSigs {
			if !verifiesAny(keys, d.Payload, s) {
				return nil, fmt.Errorf("%w: payload signature %d of %d does not verify the payload digest %x with any of %d key(s)",
					ErrSignatureMismatch, i+1, len(payloadSigs), d.Payload, len(keys))
			}
		}
		for i, s := range metadataSigs {
			if !verifiesAny(keys, d.Metadata, s) {
				return nil, fmt.Errorf("%w: metadata signature %d of %d does not verify the metadata digest %x with any of %d key(s)",
					ErrMetadataSignatureMismatch, i+1, len(metadataSigs), d.Metadata, len(keys))
			}
		}
	}
	if mb != nil {
		if _, err := f.WriteAt(mb, int64(m.MetadataSize())); err != nil {
			return nil, fmt.Errorf("payload: write metadata signature: %w", err)
		}
	}
	if _, err := f.WriteAt(sb, int64(m.DataStart()+m.SignaturesOffset)); err != nil {
		return nil, fmt.Errorf("payload: write signature: %w", err)
	}
	return d, nil
}

// fitSignatures returns the blob of sigs, which must have the signature
// count and sizes of the reserved blob old.
func fitSignatures(old []byte, sigs [][]byte, what string) ([]byte, error) {
	reserved, err := parseSignatures(old)
	if err != nil {
		return nil, fmt.Errorf("%w: the reserved %s signature blob: %v", ErrSign, what, err)
	}
	if len(sigs) != len(reserved) {
		return nil, fmt.Errorf("%w: %d %s signature(s) given, the payload reserves %d", ErrSign, len(sigs), what, len(reserved))
	}
	for i, s := range sigs {
		if len(s) != len(reserved[i]) {
			return nil, fmt.Errorf("%w: %s signature %d is %d bytes, the payload reserves %d (generate with --signature-size matching the keys: 256 for RSA-2048)",
				ErrSign, what, i+1, len(s), len(reserved[i]))
		}
	}
	b, err := signaturesBlob(sigs)
	if err != nil {
		return nil, err
	}
	if len(b) != len(old) {
		return nil, fmt.Errorf("%w: %s signature blob of %d bytes, the payload reserves %d", ErrSign, what, len(b), len(old))
	}
	return b, nil
}

func verifiesAny(keys []*rsa.PublicKey, digest, sig []byte) bool {
	for _, k := range keys {
		if rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil {
			return true
		}
	}
	return false
}
