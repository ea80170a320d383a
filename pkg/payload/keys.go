package payload

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/abupdate/update_engine/pkg/payload/metadata"
	"google.golang.org/protobuf/proto"
)

// ErrKey: a key file holds no usable RSA key.
var ErrKey = errors.New("payload: no usable RSA key")

// ParsePublicKeys returns every RSA public key in PEM data: SubjectPublicKeyInfo
// ("PUBLIC KEY", as update-payload-key.pub.pem), PKCS#1 ("RSA PUBLIC KEY"), or
// the public half of a private key. Several blocks = key rotation.
func ParsePublicKeys(data []byte) ([]*rsa.PublicKey, error) {
	var keys []*rsa.PublicKey
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		switch b.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrKey, err)
			}
			rk, ok := k.(*rsa.PublicKey)
			if !ok {
				return nil, fmt.Errorf("%w: %T is not RSA", ErrKey, k)
			}
			keys = append(keys, rk)
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrKey, err)
			}
			keys = append(keys, k)
		case "RSA PRIVATE KEY", "PRIVATE KEY":
			k, err := parsePrivate(b)
			if err != nil {
				return nil, err
			}
			keys = append(keys, &k.PublicKey)
		}
	}
	if len(keys) == 0 {
		return nil, ErrKey
	}
	return keys, nil
}

// ParsePrivateKeys returns every RSA private key in PEM data (PKCS#1 or
// PKCS#8). Several keys sign a payload several times (key rotation).
func ParsePrivateKeys(data []byte) ([]*rsa.PrivateKey, error) {
	var keys []*rsa.PrivateKey
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "RSA PRIVATE KEY" && b.Type != "PRIVATE KEY" {
			continue
		}
		k, err := parsePrivate(b)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, ErrKey
	}
	return keys, nil
}

func parsePrivate(b *pem.Block) (*rsa.PrivateKey, error) {
	if b.Type == "RSA PRIVATE KEY" {
		k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKey, err)
		}
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %T is not RSA", ErrKey, k)
	}
	return rk, nil
}

// MarshalPrivateKey and MarshalPublicKey write PEM (PKCS#1 private,
// SubjectPublicKeyInfo public), the forms update_engine's tools use.
func MarshalPrivateKey(k *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

// MarshalPublicKey: see MarshalPrivateKey.
func MarshalPublicKey(k *rsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// signaturesBlob serializes sigs (one per key, oldest key first) as a
// Signatures message. Versions are numbered as Flatcar does: with N
// signatures, 3-N … 2, so the last (the newest key's) carries version 2, the
// one Flatcar clients use. The length depends only on the signatures'
// lengths, so a blob of zero placeholders has the length of the real one.
func signaturesBlob(sigs [][]byte) ([]byte, error) {
	var m metadata.Signatures
	for i, s := range sigs {
		m.Signatures = append(m.Signatures, &metadata.Signatures_Signature{
			Version:               proto.Uint32(uint32(3 - len(sigs) + i)),
			Data:                  s,
			UnpaddedSignatureSize: proto.Uint32(uint32(len(s))),
		})
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(&m)
}

// verifyBlob reports whether any signature in blob verifies digest with any
// key. errInvalid is returned (wrapped) when blob does not parse, errMismatch
// when nothing verifies.
func verifyBlob(blob, digest []byte, keys []*rsa.PublicKey, errInvalid, errMismatch error) error {
	var sigs metadata.Signatures
	if err := proto.Unmarshal(blob, &sigs); err != nil {
		return fmt.Errorf("%w: %v", errInvalid, err)
	}
	if len(sigs.Signatures) == 0 {
		return fmt.Errorf("%w: no signatures in blob", errInvalid)
	}
	for _, s := range sigs.Signatures {
		data := s.GetData()
		if s.UnpaddedSignatureSize != nil {
			if int(s.GetUnpaddedSignatureSize()) > len(data) {
				continue // malformed: never verifies
			}
			data = data[:s.GetUnpaddedSignatureSize()]
		}
		for _, k := range keys {
			if rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, data) == nil {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: %d signature(s), none verifies with %d key(s)", errMismatch, len(sigs.Signatures), len(keys))
}

// CountSignatures returns how many signatures a Signatures blob holds.
func CountSignatures(blob []byte) (int, error) {
	sigs, err := parseSignatures(blob)
	return len(sigs), err
}

// parseSignatures returns the data of each signature in a Signatures blob.
func parseSignatures(blob []byte) ([][]byte, error) {
	var m metadata.Signatures
	if err := proto.Unmarshal(blob, &m); err != nil {
		return nil, err
	}
	var sigs [][]byte
	for _, s := range m.Signatures {
		sigs = append(sigs, s.GetData())
	}
	return sigs, nil
}
