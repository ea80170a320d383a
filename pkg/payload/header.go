package payload

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/abupdate/update_engine/pkg/payload/metadata"
	"google.golang.org/protobuf/proto"
)

// Magic starts every payload.
const Magic = "CrAU"

// SparseHole is the start_block of an extent that is a hole.
const SparseHole = ^uint64(0)

// Limits on the metadata, which is held in memory: far above any real
// payload (a 1 GiB image in 2 MiB operations has a manifest of ~60 KiB).
const (
	maxManifestSize          = 64 << 20
	maxMetadataSignatureSize = 1 << 20
)

// Header is the fixed front of a payload.
type Header struct {
	Major                 uint64 // 1 or 2
	ManifestSize          uint64
	MetadataSignatureSize uint32 // version 2 only
}

// Len is the header length: 20 for version 1, 24 for version 2.
func (h Header) Len() uint64 {
	if h.Major == 1 {
		return 20
	}
	return 24
}

// MetadataSize is header plus manifest, the bytes the metadata signature signs.
func (h Header) MetadataSize() uint64 { return h.Len() + h.ManifestSize }

// DataStart is the payload offset of the first data blob byte.
func (h Header) DataStart() uint64 { return h.MetadataSize() + uint64(h.MetadataSignatureSize) }

// ParseHeader decodes the first 20 (v1) or 24 (v2) bytes of b.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < 4 {
		return h, fmt.Errorf("%w: %d header bytes", ErrTruncated, len(b))
	}
	if !bytes.Equal(b[:4], []byte(Magic)) {
		return h, fmt.Errorf("%w: %q at offset 0", ErrBadMagic, b[:4])
	}
	if len(b) < 20 {
		return h, fmt.Errorf("%w: %d header bytes", ErrTruncated, len(b))
	}
	h.Major = binary.BigEndian.Uint64(b[4:])
	h.ManifestSize = binary.BigEndian.Uint64(b[12:])
	switch h.Major {
	case 1:
	case 2:
		if len(b) < 24 {
			return h, fmt.Errorf("%w: %d header bytes", ErrTruncated, len(b))
		}
		h.MetadataSignatureSize = binary.BigEndian.Uint32(b[20:])
	default:
		return h, fmt.Errorf("%w: %d at offset 4", ErrUnsupportedVersion, h.Major)
	}
	if h.ManifestSize == 0 || h.ManifestSize > maxManifestSize {
		return h, fmt.Errorf("%w: manifest size %d at offset 12", ErrMetadataSize, h.ManifestSize)
	}
	if h.MetadataSignatureSize > maxMetadataSignatureSize {
		return h, fmt.Errorf("%w: metadata signature size %d at offset 20", ErrMetadataSize, h.MetadataSignatureSize)
	}
	return h, nil
}

func (h Header) marshal() []byte {
	b := make([]byte, h.Len())
	copy(b, Magic)
	binary.BigEndian.PutUint64(b[4:], h.Major)
	binary.BigEndian.PutUint64(b[12:], h.ManifestSize)
	if h.Major == 2 {
		binary.BigEndian.PutUint32(b[20:], h.MetadataSignatureSize)
	}
	return b
}

// Partition is one update target of a payload, in data order. Version 1
// payloads have the USR partition (named "root") then one per Flatcar
// install procedure ("kernel", "pcr_policy", "procedure<N>").
type Partition struct {
	Name    string
	Ops     []*metadata.InstallOperation
	OldInfo *metadata.PartitionInfo // nil when absent
	NewInfo *metadata.PartitionInfo // nil when absent
	// Version is the new image's version the manifest carries ("" when
	// none): v2 PartitionUpdate.version; v1 new_image_info.version, for the
	// USR partition only. It is as trustworthy as the manifest: signed once
	// the signatures verified.
	Version string
}

// Metadata is the parsed front of a payload: header, manifest and (v2)
// metadata signature. It does not hold data blobs.
type Metadata struct {
	Header
	// Raw holds the bytes [0, DataStart).
	Raw []byte
	// Manifest is set for version 2, Flatcar for version 1.
	Manifest *metadata.DeltaArchiveManifest
	Flatcar  *metadata.FlatcarManifest

	BlockSize        uint32
	MinorVersion     uint32
	SignaturesOffset uint64 // blob offset of the payload signature
	SignaturesSize   uint64 // 0: unsigned
	Partitions       []Partition
}

// MetadataSignature returns the v2 metadata signature blob (nil for v1).
func (m *Metadata) MetadataSignature() []byte { return m.Raw[m.MetadataSize():m.DataStart()] }

// Size is the payload's total length as the manifest declares it.
func (m *Metadata) Size() uint64 { return m.DataStart() + m.dataEnd() }

// dataEnd is the blob offset where the payload ends.
func (m *Metadata) dataEnd() uint64 {
	if m.SignaturesSize > 0 {
		return m.SignaturesOffset + m.SignaturesSize
	}
	var end uint64
	for _, p := range m.Partitions {
		for _, op := range p.Ops {
			if op.GetDataLength() > 0 {
				end = max(end, op.GetDataOffset()+op.GetDataLength())
			}
		}
	}
	return end
}

// ReadMetadata reads exactly the metadata (header, manifest, v2 metadata
// signature) from r and parses it. It does not verify the signature.
func ReadMetadata(r io.Reader) (*Metadata, error) {
	h, hb, err := readHeader(r)
	if err != nil {
		return nil, err
	}
	raw, err := readRawMetadata(r, h, hb)
	if err != nil {
		return nil, err
	}
	return ParseMetadata(raw)
}

func readRawMetadata(r io.Reader, h Header, hb []byte) ([]byte, error) {
	raw := make([]byte, h.DataStart())
	copy(raw, hb)
	if _, err := io.ReadFull(r, raw[len(hb):]); err != nil {
		return nil, fmt.Errorf("%w: metadata (%d bytes): %v", ErrTruncated, len(raw), err)
	}
	return raw, nil
}

// readHeader reads and parses the header.
func readHeader(r io.Reader) (Header, []byte, error) {
	hb := make([]byte, 24)
	if n, err := io.ReadFull(r, hb[:20]); err != nil {
		if n >= 4 && string(hb[:4]) != Magic {
			return Header{}, nil, fmt.Errorf("%w: %q at offset 0", ErrBadMagic, hb[:4])
		}
		return Header{}, nil, fmt.Errorf("%w: header: %v", ErrTruncated, err)
	}
	if binary.BigEndian.Uint64(hb[4:]) == 2 {
		if _, err := io.ReadFull(r, hb[20:24]); err != nil {
			return Header{}, nil, fmt.Errorf("%w: header: %v", ErrTruncated, err)
		}
	} else {
		hb = hb[:20]
	}
	h, err := ParseHeader(hb)
	return h, hb, err
}

// ParseMetadata parses raw, the bytes [0, DataStart) of a payload.
func ParseMetadata(raw []byte) (*Metadata, error) {
	h, err := ParseHeader(raw)
	if err != nil {
		return nil, err
	}
	if uint64(len(raw)) != h.DataStart() {
		return nil, fmt.Errorf("%w: have %d metadata bytes, header says %d", ErrTruncated, len(raw), h.DataStart())
	}
	m := &Metadata{Header: h, Raw: raw}
	mb := raw[h.Len():h.MetadataSize()]
	if h.Major == 1 {
		var fm metadata.FlatcarManifest
		if err := proto.Unmarshal(mb, &fm); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrManifestParse, err)
		}
		m.Flatcar = &fm
		m.BlockSize = fm.GetBlockSize()
		m.SignaturesOffset, m.SignaturesSize = fm.GetSignaturesOffset(), fm.GetSignaturesSize()
		m.Partitions = append(m.Partitions, Partition{Name: "root", Ops: fm.PartitionOperations,
			OldInfo: fm.OldPartitionInfo, NewInfo: fm.NewPartitionInfo, Version: fm.GetNewImageInfo().GetVersion()})
		for i, pr := range fm.Procedures {
			name := fmt.Sprintf("procedure%d", i)
			if pr.Type != nil {
				name = procedureNames[pr.GetType()]
			}
			m.Partitions = append(m.Partitions, Partition{Name: name, Ops: pr.Operations, OldInfo: pr.OldInfo, NewInfo: pr.NewInfo})
		}
	} else {
		var dm metadata.DeltaArchiveManifest
		if err := proto.Unmarshal(mb, &dm); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrManifestParse, err)
		}
		m.Manifest = &dm
		m.BlockSize = dm.GetBlockSize()
		m.MinorVersion = dm.GetMinorVersion()
		m.SignaturesOffset, m.SignaturesSize = dm.GetSignaturesOffset(), dm.GetSignaturesSize()
		if len(dm.InstallOperations) > 0 || len(dm.KernelInstallOperations) > 0 {
			// Pre-2015 ChromeOS v1-style fields inside a v2 manifest.
			m.Partitions = append(m.Partitions, Partition{Name: "root", Ops: dm.InstallOperations, OldInfo: dm.OldRootfsInfo, NewInfo: dm.NewRootfsInfo})
			m.Partitions = append(m.Partitions, Partition{Name: "kernel", Ops: dm.KernelInstallOperations, OldInfo: dm.OldKernelInfo, NewInfo: dm.NewKernelInfo})
		}
		for _, p := range dm.Partitions {
			m.Partitions = append(m.Partitions, Partition{Name: p.GetPartitionName(), Ops: p.Operations, OldInfo: p.OldPartitionInfo, NewInfo: p.NewPartitionInfo,
				Version: p.GetVersion()})
		}
	}
	if m.BlockSize == 0 || m.BlockSize%512 != 0 || m.BlockSize > 1<<20 {
		return nil, fmt.Errorf("%w: block size %d", ErrInvalidManifest, m.BlockSize)
	}
	for _, p := range m.Partitions {
		for i, op := range p.Ops {
			if op.Type == nil {
				return nil, fmt.Errorf("%w: partition %q op %d: missing or unknown type", ErrUnknownOperation, p.Name, i)
			}
		}
	}
	return m, nil
}

// VerifyMetadataSignature checks the version 2 metadata signature against
// keys. It is a no-op for version 1 (whose metadata is only covered by the
// payload signature) and when keys is empty.
func (m *Metadata) VerifyMetadataSignature(keys []*rsa.PublicKey) error {
	if len(keys) == 0 || m.Major == 1 {
		return nil
	}
	return verifyRawMetadata(m.Header, m.Raw, keys)
}

// verifyRawMetadata checks the v2 metadata signature on unparsed metadata,
// so that a tampered manifest reports a signature mismatch, not a parse error.
func verifyRawMetadata(h Header, raw []byte, keys []*rsa.PublicKey) error {
	if len(keys) == 0 || h.Major == 1 {
		return nil
	}
	if h.MetadataSignatureSize == 0 {
		return ErrMetadataSignatureMissing
	}
	d := sha256.Sum256(raw[:h.MetadataSize()])
	return verifyBlob(raw[h.MetadataSize():h.DataStart()], d[:], keys, ErrMetadataSignatureInvalid, ErrMetadataSignatureMismatch)
}
