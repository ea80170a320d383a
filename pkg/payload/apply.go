package payload

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding"
	"fmt"
	"hash"
	"io"
	"time"
)

// Options configure Apply and Resume. The zero value applies without
// signature checks, on all cores, with checkpoints off.
type Options struct {
	// Keys verify the metadata (v2) and payload signatures. Empty: the
	// payload is not required to be signed (as update_engine without a key
	// file). Several keys: any one suffices (key rotation).
	Keys []*rsa.PublicKey
	// Source is the old partition, read by delta operations (SOURCE_COPY…).
	Source io.ReaderAt
	// Partition is the payload partition applied to the target: "" means
	// "root" (version 1 payloads name their USR partition "root") or the
	// only partition. Other partitions' data is verified and skipped,
	// unless Files gives them a place.
	Partition string
	// Files, if set, is asked once for each install procedure of a major
	// 1 payload, by partition name (Flatcar's "kernel" and "pcr_policy",
	// "procedure<N>" when untyped), after the metadata parsed and before
	// the first
	// write; it returns where that partition is written as a file, or nil
	// to verify and drop its data. Such a partition needs a new_info: at
	// the end, after the payload signature verified, each file is
	// truncated to new_info.size, synced, read back and checked against
	// new_info.hash (ErrNewKernelHash, ErrNewPCRPolicyHash,
	// ErrNewFileHash). The caller owns the files: it closes them, and
	// removes them when Apply fails. Checkpoints stop before the first
	// file operation, so Resume writes the files from their start (they
	// must be given again, emptied).
	Files func(name string) (FileTarget, error)
	// Strict refuses project extensions (REPLACE_ZSTD).
	Strict bool
	// Direct: the target is opened O_DIRECT, so every write uses a
	// 4096-aligned offset, length and buffer.
	Direct bool
	// ExpectedSize and ExpectedSHA256, when set (from Omaha), are checked:
	// the size against the manifest before the first write, the hash of the
	// whole payload before the signature.
	ExpectedSize   int64
	ExpectedSHA256 []byte
	// Version, when set, is the version the update server offered for
	// this payload (Omaha's manifest version). A payload that carries a
	// version (Partition.Version) must carry exactly this one, or it is
	// refused with ErrVersionMismatch before the first write. The
	// comparison is made on the manifest as read: for v2 its metadata
	// signature was verified first; a v1 manifest is only covered by the
	// payload signature, verified at the end, so a forged v1 version still
	// fails Apply (after writes to the target).
	Version string
	// RequireVersion refuses, with ErrVersionMissing and before the first
	// write, a payload that carries no version (set where a version floor
	// is enforced on Version).
	RequireVersion bool
	// TargetSize, when > 0, bounds the extents (bytes).
	TargetSize int64
	// Workers decoding operations in parallel; 0 = GOMAXPROCS.
	Workers int
	// WorkerInit, when set, runs first on each decoding goroutine, e.g.
	// to lower its CPU priority. It may lock the goroutine to its OS
	// thread: the goroutine ends with the apply.
	WorkerInit func()
	// MemoryBudget bounds operation data in flight (bytes); 0 = 16 MiB,
	// or up to 48 MiB when two of the payload's largest operations need
	// more (so that two cores decode 16 MiB operations side by side; a
	// 24 MiB one, XZChunkSize, with its data fits the largest budget).
	// REPLACE_ZSTD operations of more than 8 MiB are decoded by one
	// stream whose window and pieces are reserved out of the budget
	// (zstd.go); 0 then also leaves 12 MiB for the data.
	MemoryBudget int64
	// MemoryLimit, if set, is called once before the first operation with
	// a soft memory limit for the process that applies: what the run
	// holds at most (its buffers within the budget, a zstd stream's
	// window) and room for its decoders and the Go runtime. A process
	// doing little else meanwhile passes it to debug.SetMemoryLimit:
	// without a limit the runtime lets freed buffers stay until the heap
	// doubles; with one above the run's needs, it keeps them up to it.
	MemoryLimit func(bytes int64)
	// Progress, if set, is called from one goroutine after each operation
	// with the payload bytes consumed so far.
	Progress func(consumed int64)
	// OpDuration, if set, is called from one goroutine after each
	// operation with its type name (e.g. "REPLACE_XZ") and the time spent
	// verifying, decoding and writing it (not time queued between
	// stages). Unset, nothing is timed.
	OpDuration func(opType string, d time.Duration)
	// Checkpoint, if set, is called after an operation's write once the
	// target is synced (when it has Sync() error). An error aborts.
	Checkpoint func(*Checkpoint) error
	// CheckpointBytes: checkpoint once at least this many payload bytes
	// were consumed since the last one; 0 = after every operation.
	CheckpointBytes int64
}

// Checkpoint is where a new process can resume an interrupted Apply. It is
// plain data (JSON-serializable). Resume needs a reader positioned at Offset.
type Checkpoint struct {
	NextOp int   // index of the next operation, in data order
	Offset int64 // absolute payload offset to read from
	// Metadata is the raw bytes [0, DataStart) of the payload.
	Metadata []byte
	// PayloadHash and SignedHash are SHA-256 states (encoding.BinaryMarshaler)
	// of the whole payload and of the signed bytes, up to Offset.
	PayloadHash []byte
	SignedHash  []byte
	// PartitionHash is the SHA-256 state of the new partition's first
	// PartitionHashed bytes, valid while PartitionStreaming.
	PartitionHash      []byte
	PartitionHashed    uint64
	PartitionStreaming bool
}

// FileTarget receives a file partition (Options.Files); *os.File is one.
type FileTarget interface {
	io.WriterAt
	io.ReaderAt
	Truncate(size int64) error
	Sync() error
}

// FileResult is a file partition written and verified.
type FileResult struct {
	Name   string // payload partition name ("kernel", "pcr_policy")
	Size   uint64 // new_info.size
	SHA256 []byte // new_info.hash, verified on the file
}

// Result describes a payload that applied and verified.
type Result struct {
	Size          int64  // payload bytes read
	SHA256        []byte // of the whole payload, for Omaha's size/sha256 check
	Major         uint64
	Partition     string
	PartitionSize uint64 // new_partition_info.size (0 if absent)
	PartitionHash []byte // verified new partition hash (nil if absent)
	Version       string // the version the payload carries for Partition ("" if none)
	Ops           int
	Files         []FileResult // the file partitions written (Options.Files), in payload order
}

// syncer is implemented by targets that can flush to stable storage.
type syncer interface{ Sync() error }

// Apply streams the payload r onto target. See the package doc for what is
// verified when. The target is written only after the metadata verified and
// validated; on error, no operation after the first failing one was written.
func Apply(ctx context.Context, r io.Reader, target io.WriterAt, o Options) (*Result, error) {
	h, hb, err := readHeader(r)
	if err != nil {
		return nil, err
	}
	raw, err := readRawMetadata(r, h, hb)
	if err != nil {
		return nil, err
	}
	a, err := newApplier(raw, &o)
	if err != nil {
		return nil, err
	}
	a.whole.Write(raw)
	if a.signed != nil {
		a.signed.Write(raw[:h.MetadataSize()])
	}
	a.off = int64(h.DataStart())
	if err := a.preWrite(ctx); err != nil {
		return nil, err
	}
	return a.run(ctx, r, target, 0)
}

// preWriteChecks run after the metadata verified and validated and before
// the first write, in Apply and Resume: the extension point for checks
// that need more than the manifest (e.g. the delta source against
// old_partition_info). Files of this package append to it in init.
var preWriteChecks []func(ctx context.Context, p *plan, o *Options) error

func (a *applier) preWrite(ctx context.Context) error {
	for _, c := range preWriteChecks {
		if err := c(ctx, a.p, a.o); err != nil {
			return err
		}
	}
	return nil
}

// Resume continues an Apply from cp; r must yield the payload from
// cp.Offset. It verifies the same things as Apply, including the hash and
// signature of the whole payload.
func Resume(ctx context.Context, cp *Checkpoint, r io.Reader, target io.WriterAt, o Options) (*Result, error) {
	a, err := newApplier(cp.Metadata, &o)
	if err != nil {
		return nil, err
	}
	if cp.NextOp < 0 || cp.NextOp > len(a.p.steps) {
		return nil, fmt.Errorf("%w: next op %d of %d", ErrBadCheckpoint, cp.NextOp, len(a.p.steps))
	}
	want := a.p.m.DataStart()
	for _, s := range a.p.steps[:cp.NextOp] {
		want += s.op.GetDataLength()
	}
	if uint64(cp.Offset) != want {
		return nil, fmt.Errorf("%w: offset %d, op %d starts at %d", ErrBadCheckpoint, cp.Offset, cp.NextOp, want)
	}
	if cp.NextOp > a.p.firstFile {
		return nil, fmt.Errorf("%w: next op %d is past the first file operation %d", ErrBadCheckpoint, cp.NextOp, a.p.firstFile)
	}
	if err := unmarshalHash(a.whole, cp.PayloadHash); err != nil {
		return nil, err
	}
	if a.signed != nil {
		if err := unmarshalHash(a.signed, cp.SignedHash); err != nil {
			return nil, err
		}
	}
	a.pstream = cp.PartitionStreaming
	if a.pstream {
		if err := unmarshalHash(a.phash, cp.PartitionHash); err != nil {
			return nil, err
		}
		a.phashed = cp.PartitionHashed
	}
	a.off = cp.Offset
	if err := a.preWrite(ctx); err != nil {
		return nil, err
	}
	return a.run(ctx, r, target, cp.NextOp)
}

func unmarshalHash(h hash.Hash, state []byte) error {
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return fmt.Errorf("%w: hash state: %v", ErrBadCheckpoint, err)
	}
	return nil
}

func marshalHash(h hash.Hash) []byte {
	b, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
	return b
}

// applier is the state of one Apply/Resume run. The reader goroutine owns
// whole, signed and off; the writer (the calling goroutine) owns the
// target's writes; finish owns phash, phashed and pstream.
type applier struct {
	p      *plan
	o      *Options
	whole  hash.Hash
	signed hash.Hash // nil: the signed bytes equal the whole payload's up to signedEnd
	off    int64

	phash   hash.Hash
	phashed uint64
	pstream bool

	files []fileOut // file partitions (Options.Files), in payload order

	pool  bufPool
	zeros []byte // 1 MiB of zeros, read-only

	zs   *zstdStream   // the run's stream decoder, when it has streamed ops
	turn chan struct{} // the reader's: the last streamed op's turnDone

	states [2][]byte // whole and signed hash states at the start of run
}

func newApplier(raw []byte, o *Options) (*applier, error) {
	h, err := ParseHeader(raw)
	if err != nil {
		return nil, err
	}
	if uint64(len(raw)) != h.DataStart() {
		return nil, fmt.Errorf("%w: metadata is %d bytes, header says %d", ErrTruncated, len(raw), h.DataStart())
	}
	if err := verifyRawMetadata(h, raw, o.Keys); err != nil {
		return nil, err
	}
	m, err := ParseMetadata(raw)
	if err != nil {
		return nil, err
	}
	p, err := newPlan(m, o)
	if err != nil {
		return nil, err
	}
	a := &applier{p: p, o: o, whole: sha256.New(), phash: sha256.New(), pstream: true}
	if err := a.openFiles(); err != nil {
		return nil, err
	}
	a.zeros = a.pool.get(1 << 20)
	clear(a.zeros)
	if h.MetadataSignatureSize > 0 {
		a.signed = sha256.New()
	}
	return a, nil
}

// finish verifies the payload signature and the new partition.
func (a *applier) finish(target io.WriterAt, t tail) (*Result, error) {
	m := a.p.m
	whole := a.whole.Sum(nil)
	if a.o.ExpectedSHA256 != nil && string(whole) != string(a.o.ExpectedSHA256) {
		return nil, fmt.Errorf("%w: %x, want %x", ErrPayloadHash, whole, a.o.ExpectedSHA256)
	}
	if len(a.o.Keys) > 0 {
		if err := verifyBlob(t.sigBlob, t.signedDigest, a.o.Keys, ErrSignatureInvalid, ErrSignatureMismatch); err != nil {
			return nil, err
		}
	}
	if s, ok := target.(syncer); ok {
		if err := s.Sync(); err != nil {
			return nil, fmt.Errorf("%w: sync: %v", ErrWrite, err)
		}
	}
	res := &Result{Size: a.off, SHA256: whole, Major: m.Major,
		Partition: m.Partitions[a.p.part].Name, Version: m.Partitions[a.p.part].Version, Ops: len(a.p.steps)}
	if ni := a.p.newInfo; ni != nil && len(ni.GetHash()) > 0 {
		var got []byte
		if a.pstream && a.phashed == ni.GetSize() {
			got = a.phash.Sum(nil)
		} else {
			ra, ok := target.(io.ReaderAt)
			if !ok {
				return nil, fmt.Errorf("%w: target cannot be read back", ErrNewPartitionHash)
			}
			var err error
			if got, err = a.hashBack(ra, ni.GetSize()); err != nil {
				return nil, err
			}
		}
		if string(got) != string(ni.GetHash()) {
			return nil, fmt.Errorf("%w: %x, want %x", ErrNewPartitionHash, got, ni.GetHash())
		}
		res.PartitionSize, res.PartitionHash = ni.GetSize(), got
	}
	for _, f := range a.files {
		if err := a.finishFile(f); err != nil {
			return nil, err
		}
		res.Files = append(res.Files, FileResult{Name: f.name, Size: f.info.GetSize(), SHA256: f.info.GetHash()})
	}
	return res, nil
}

// hashBack hashes the first size bytes of the target with aligned reads.
func (a *applier) hashBack(ra io.ReaderAt, size uint64) ([]byte, error) {
	h := sha256.New()
	buf := a.pool.get(2 << 20)
	defer a.pool.put(buf)
	for pos := uint64(0); pos < size; {
		want := min(uint64(len(buf)), size-pos)
		rd := (want + align - 1) &^ (align - 1)
		n, err := ra.ReadAt(buf[:rd], int64(pos))
		if uint64(n) < want {
			return nil, fmt.Errorf("%w: read back at %d: %v", ErrNewPartitionHash, pos, err)
		}
		h.Write(buf[:want])
		pos += want
	}
	return h.Sum(nil), nil
}
