package payload

import (
	"cmp"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/abupdate/update_engine/pkg/payload/metadata"
	"google.golang.org/protobuf/proto"
)

// Spec describes a payload for WritePayload.
type Spec struct {
	Major        uint64 // 1 or 2; 0 means 2
	BlockSize    uint32 // 0 means 4096
	MinorVersion uint32 // v2: 0 for full payloads
	Partition    string // v2 partition name; "" means "root"
	// Version of the new image, inside the signed metadata: v2
	// PartitionUpdate.version (and new_image_info.version), v1
	// new_image_info.version (a field Flatcar's readers skip).
	Version string
	OldInfo *metadata.PartitionInfo
	NewInfo *metadata.PartitionInfo
	// Ops in data order; data_offset/data_length relative to the first blob
	// byte, sequential. WritePayload does not modify them.
	Ops []*metadata.InstallOperation
	// Procedures (major 1 only) are Flatcar's install procedures (the
	// kernel, the PCR policy), whose ops' data follows Ops' in data order.
	Procedures []*metadata.InstallProcedure
}

// ErrSpec: WritePayload was given an inconsistent Spec.
var ErrSpec = errors.New("payload: invalid spec")

// WritePayload writes a payload: header, manifest, metadata signature (v2),
// the data blobs read from blobs (exactly the ops' total data length), and a
// payload signature by every key (none when keys is empty). It returns the
// bytes written.
func WritePayload(w io.Writer, spec *Spec, blobs io.Reader, keys []*rsa.PrivateKey) (int64, error) {
	n, _, err := writePayload(w, spec, blobs, signer{keys: keys})
	return n, err
}

// writePayload is WritePayload with the signatures sg makes (signed, or
// placeholders), returning the digests they sign (nil when unsigned).
func writePayload(w io.Writer, spec *Spec, blobs io.Reader, sg signer) (int64, *Digests, error) {
	major := cmp.Or(spec.Major, 2)
	bs := cmp.Or(spec.BlockSize, 4096)
	blobSize := spec.blobSize() // not validated here: tests write bad payloads
	if len(spec.Procedures) > 0 && major != 1 {
		return 0, nil, fmt.Errorf("%w: install procedures in a major %d payload", ErrSpec, major)
	}
	ns, err := sg.blobSize()
	if err != nil {
		return 0, nil, err
	}
	sigSize := uint64(ns)
	var manifest proto.Message
	switch major {
	case 1:
		manifest = spec.v1Manifest(bs, blobSize, sigSize)
	case 2:
		manifest = spec.v2Manifest(bs, blobSize, sigSize)
	default:
		return 0, nil, fmt.Errorf("%w: major version %d", ErrSpec, major)
	}
	mb, err := proto.MarshalOptions{Deterministic: true}.Marshal(manifest)
	if err != nil {
		return 0, nil, err
	}
	h := Header{Major: major, ManifestSize: uint64(len(mb))}
	if major == 2 {
		h.MetadataSignatureSize = uint32(sigSize)
	}
	meta := append(h.marshal(), mb...)
	var digests *Digests
	if sigSize > 0 {
		digests = &Digests{}
	}
	cw := &countWriter{w: w}
	if err := writeMetadata(cw, meta, h.MetadataSignatureSize > 0, sg, digests); err != nil {
		return cw.n, nil, err
	}
	signed := sha256.New()
	signed.Write(meta)
	n, err := io.CopyN(io.MultiWriter(cw, signed), blobs, int64(blobSize))
	if err != nil {
		return cw.n, nil, fmt.Errorf("payload: copy blobs (%d of %d bytes): %w", n, blobSize, err)
	}
	if sigSize > 0 {
		digests.Payload = signed.Sum(nil)
		sb, err := sg.blob(digests.Payload)
		if err != nil {
			return cw.n, nil, err
		}
		if _, err := cw.Write(sb); err != nil {
			return cw.n, nil, err
		}
	}
	return cw.n, digests, nil
}

// blobSize is the sum of all operations' data lengths.
func (spec *Spec) blobSize() uint64 {
	var n uint64
	for _, op := range spec.Ops {
		n += op.GetDataLength()
	}
	for _, pr := range spec.Procedures {
		for _, op := range pr.Operations {
			n += op.GetDataLength()
		}
	}
	return n
}

// v1Manifest is Flatcar's manifest for spec; a signed one ends with the
// noop operation that covers the signature blob, as Flatcar's generator
// writes it.
func (spec *Spec) v1Manifest(bs uint32, blobSize, sigSize uint64) *metadata.FlatcarManifest {
	fm := &metadata.FlatcarManifest{
		PartitionOperations: spec.Ops,
		BlockSize:           proto.Uint32(bs),
		OldPartitionInfo:    spec.OldInfo,
		NewPartitionInfo:    spec.NewInfo,
		Procedures:          spec.Procedures,
	}
	if spec.Version != "" {
		fm.NewImageInfo = &metadata.ImageInfo{Version: proto.String(spec.Version)}
	}
	if sigSize > 0 {
		fm.SignaturesOffset, fm.SignaturesSize = proto.Uint64(blobSize), proto.Uint64(sigSize)
		fm.NoopOperations = []*metadata.InstallOperation{{
			Type:       metadata.InstallOperation_REPLACE.Enum(),
			DataOffset: proto.Uint64(blobSize), DataLength: proto.Uint64(sigSize),
			DstExtents: []*metadata.Extent{{StartBlock: proto.Uint64(SparseHole),
				NumBlocks: proto.Uint64((sigSize + uint64(bs) - 1) / uint64(bs))}},
		}}
	}
	return fm
}

// v2Manifest is the DeltaArchiveManifest of spec's one partition.
func (spec *Spec) v2Manifest(bs uint32, blobSize, sigSize uint64) *metadata.DeltaArchiveManifest {
	pu := &metadata.PartitionUpdate{
		PartitionName:    proto.String(cmp.Or(spec.Partition, "root")),
		OldPartitionInfo: spec.OldInfo,
		NewPartitionInfo: spec.NewInfo,
		Operations:       spec.Ops,
	}
	dm := &metadata.DeltaArchiveManifest{
		BlockSize:    proto.Uint32(bs),
		MinorVersion: proto.Uint32(spec.MinorVersion),
		Partitions:   []*metadata.PartitionUpdate{pu},
	}
	if spec.Version != "" {
		pu.Version = proto.String(spec.Version)
		dm.NewImageInfo = &metadata.ImageInfo{Version: proto.String(spec.Version)}
	}
	if sigSize > 0 {
		dm.SignaturesOffset, dm.SignaturesSize = proto.Uint64(blobSize), proto.Uint64(sigSize)
	}
	return dm
}

// writeMetadata writes the header and manifest (meta) and, when sign, the
// metadata signature of their digest, which goes into digests.
func writeMetadata(w io.Writer, meta []byte, sign bool, sg signer, digests *Digests) error {
	if _, err := w.Write(meta); err != nil {
		return err
	}
	if !sign {
		return nil
	}
	d := sha256.Sum256(meta)
	digests.Metadata = d[:]
	ms, err := sg.blob(d[:])
	if err != nil {
		return err
	}
	_, err = w.Write(ms)
	return err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
