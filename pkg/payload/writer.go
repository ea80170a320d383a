package payload

import (
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
	major := spec.Major
	if major == 0 {
		major = 2
	}
	bs := spec.BlockSize
	if bs == 0 {
		bs = 4096
	}
	var blobSize uint64 // not validated here: tests write bad payloads
	for _, op := range spec.Ops {
		blobSize += op.GetDataLength()
	}
	for _, pr := range spec.Procedures {
		for _, op := range pr.Operations {
			blobSize += op.GetDataLength()
		}
	}
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
		manifest = fm
	case 2:
		name := spec.Partition
		if name == "" {
			name = "root"
		}
		pu := &metadata.PartitionUpdate{
			PartitionName:    proto.String(name),
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
		manifest = dm
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
	signed := sha256.New()
	signed.Write(meta)
	cw := &countWriter{w: w}
	if _, err := cw.Write(meta); err != nil {
		return cw.n, nil, err
	}
	var digests *Digests
	if sigSize > 0 {
		digests = &Digests{}
	}
	if h.MetadataSignatureSize > 0 {
		d := sha256.Sum256(meta)
		digests.Metadata = d[:]
		ms, err := sg.blob(d[:])
		if err != nil {
			return cw.n, nil, err
		}
		if _, err := cw.Write(ms); err != nil {
			return cw.n, nil, err
		}
	}
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

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
