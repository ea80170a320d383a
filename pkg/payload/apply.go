package payload

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
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
	// only partition. Other partitions' data is verified and skipped.
	Partition string
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
	// TargetSize, when > 0, bounds the extents (bytes).
	TargetSize int64
	// Workers decoding operations in parallel; 0 = GOMAXPROCS.
	Workers int
	// MemoryBudget bounds operation data in flight (bytes); 0 = 16 MiB.
	MemoryBudget int64
	// Progress, if set, is called from one goroutine after each operation
	// with the payload bytes consumed so far.
	Progress func(consumed int64)
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

// Result describes a payload that applied and verified.
type Result struct {
	Size          int64  // payload bytes read
	SHA256        []byte // of the whole payload, for Omaha's size/sha256 check
	Major         uint64
	Partition     string
	PartitionSize uint64 // new_partition_info.size (0 if absent)
	PartitionHash []byte // verified new partition hash (nil if absent)
	Ops           int
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
	return a.run(ctx, r, target, 0)
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
// whole, signed and off; the writer (the calling goroutine) owns phash,
// phashed, pstream and target.
type applier struct {
	p      *plan
	o      *Options
	whole  hash.Hash
	signed hash.Hash // nil: the signed bytes equal the whole payload's up to signedEnd
	off    int64

	phash   hash.Hash
	phashed uint64
	pstream bool

	pool  bufPool
	zeros []byte
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
	if h.MetadataSignatureSize > 0 {
		a.signed = sha256.New()
	}
	return a, nil
}

// job is one operation in flight.
type job struct {
	idx    int
	s      *step
	buf    []byte // pooled; data is buf[:data_length]
	out    []byte // decoded output, len dstBytes; may alias buf
	end    int64  // payload offset after this op's data
	tokens int
	err    error
	done   chan struct{} // closed when err/out are final

	wholeState, signedState []byte // hash states at end, for checkpoints
}

// tail is what the reader learned after the last operation.
type tail struct {
	err          error
	signedDigest []byte
	sigBlob      []byte
}

func (a *applier) run(ctx context.Context, r io.Reader, target io.WriterAt, start int) (*Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := a.o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	mem := a.o.MemoryBudget
	if mem <= 0 {
		mem = 16 << 20
	}
	bud := newBudget(mem)
	order := make(chan *job, 2*workers+2)
	jobs := make(chan *job, 2*workers+2)
	tailc := make(chan tail, 1)
	done := make(chan struct{})
	for w := 0; w < workers; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			d := &decoder{src: a.o.Source, bs: a.p.bs}
			defer func() {
				if d.zstd != nil {
					d.zstd.Close()
				}
			}()
			for j := range jobs {
				j.err = a.exec(d, j)
				close(j.done)
			}
		}()
	}
	go func() {
		defer close(jobs)
		defer close(order)
		tailc <- a.read(ctx, r, start, bud, order, jobs)
	}()

	werr := a.write(ctx, target, order, bud)
	if werr != nil {
		cancel()
		for j := range order { // let the reader finish
			<-j.done
		}
	}
	for w := 0; w < workers; w++ {
		<-done
	}
	t := <-tailc
	if werr != nil {
		return nil, werr
	}
	if t.err != nil {
		return nil, t.err
	}
	return a.finish(target, t)
}

// read is the reader goroutine: it reads each operation's data, hashes the
// stream and hands jobs to the workers and, in order, to the writer.
func (a *applier) read(ctx context.Context, r io.Reader, start int, bud budget, order, jobs chan<- *job) tail {
	ckpt := a.o.Checkpoint != nil
	for i := start; i < len(a.p.steps); i++ {
		if err := ctx.Err(); err != nil {
			return tail{err: err}
		}
		s := &a.p.steps[i]
		j := &job{idx: i, s: s, done: make(chan struct{})}
		dl := int64(s.op.GetDataLength())
		need := dl
		if s.write && !s.kind.noOutput {
			if s.kind.inPlace {
				need = max(dl, int64(s.dstBytes))
			} else {
				need += int64(s.dstBytes)
			}
		}
		var err error
		if j.tokens, err = bud.acquire(ctx, need); err != nil {
			return tail{err: err}
		}
		if dl > 0 {
			n := dl
			if s.write && s.kind.inPlace {
				n = int64(s.dstBytes)
			}
			j.buf = a.pool.get(int(n))
			if _, err := io.ReadFull(r, j.buf[:dl]); err != nil {
				j.err = fmt.Errorf("%w: op %d data at offset %d: %v", ErrTruncated, i, a.off, err)
				close(j.done)
				select {
				case order <- j:
				case <-ctx.Done():
				}
				return tail{}
			}
			a.whole.Write(j.buf[:dl])
			if a.signed != nil {
				a.signed.Write(j.buf[:dl])
			}
			a.off += dl
		}
		j.end = a.off
		if ckpt {
			j.wholeState = marshalHash(a.whole)
			if a.signed != nil {
				j.signedState = marshalHash(a.signed)
			}
		}
		select {
		case order <- j:
		case <-ctx.Done():
			return tail{err: ctx.Err()}
		}
		if dl > 0 || (s.write && !s.kind.noOutput) {
			select {
			case jobs <- j:
			case <-ctx.Done():
				j.err = ctx.Err()
				close(j.done)
				return tail{err: ctx.Err()}
			}
		} else {
			close(j.done)
		}
	}
	var t tail
	if a.signed != nil {
		t.signedDigest = a.signed.Sum(nil)
	} else {
		t.signedDigest = a.whole.Sum(nil)
	}
	if n := a.p.m.SignaturesSize; n > 0 {
		t.sigBlob = make([]byte, n)
		if _, err := io.ReadFull(r, t.sigBlob); err != nil {
			return tail{err: fmt.Errorf("%w: signature blob at offset %d: %v", ErrTruncated, a.off, err)}
		}
		a.whole.Write(t.sigBlob)
		a.off += int64(n)
	}
	var one [1]byte
	if n, err := io.ReadFull(r, one[:]); n > 0 {
		return tail{err: fmt.Errorf("%w: data after the declared end at offset %d", ErrTruncated, a.off)}
	} else if err != io.EOF {
		return tail{err: fmt.Errorf("%w: at offset %d: %v", ErrTruncated, a.off, err)}
	}
	return t
}

// exec runs in a worker: verify the data hash, then decode.
func (a *applier) exec(d *decoder, j *job) error {
	s := j.s
	if dl := s.op.GetDataLength(); dl > 0 {
		sum := sha256.Sum256(j.buf[:dl])
		if string(sum[:]) != string(s.op.GetDataSha256Hash()) {
			return fmt.Errorf("%w: op %d", ErrOperationHashMismatch, j.idx)
		}
	}
	if !s.write || s.kind.noOutput {
		return nil
	}
	if s.kind.inPlace {
		j.out = j.buf[:s.dstBytes]
	} else {
		j.out = a.pool.get(int(s.dstBytes))
	}
	var data []byte
	if j.buf != nil {
		data = j.buf[:s.op.GetDataLength()]
	}
	if err := s.kind.run(d, s.op, data, j.out); err != nil {
		if errors.Is(err, ErrOperationHashMismatch) || errors.Is(err, ErrNoSource) {
			return fmt.Errorf("op %d: %w", j.idx, err)
		}
		return fmt.Errorf("%w: op %d (%v): %v", ErrOperationExecution, j.idx, s.op.GetType(), err)
	}
	return nil
}

// write is the writer: it takes jobs in order, writes them, and
// checkpoints.
func (a *applier) write(ctx context.Context, target io.WriterAt, order <-chan *job, bud budget) error {
	var lastCP int64 = -1
	for j := range order {
		<-j.done
		if j.err != nil {
			return j.err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if j.s.write {
			if err := a.writeOp(target, j); err != nil {
				return err
			}
		}
		a.release(j, bud)
		if a.o.Progress != nil {
			a.o.Progress(j.end)
		}
		if a.o.Checkpoint != nil && (a.o.CheckpointBytes <= 0 || lastCP < 0 || j.end-lastCP >= a.o.CheckpointBytes || j.idx == len(a.p.steps)-1) {
			if s, ok := target.(syncer); ok {
				if err := s.Sync(); err != nil {
					return fmt.Errorf("%w: sync: %v", ErrWrite, err)
				}
			}
			cp := &Checkpoint{NextOp: j.idx + 1, Offset: j.end, Metadata: a.p.m.Raw,
				PayloadHash: j.wholeState, SignedHash: j.signedState,
				PartitionStreaming: a.pstream, PartitionHashed: a.phashed}
			if a.pstream {
				cp.PartitionHash = marshalHash(a.phash)
			}
			if err := a.o.Checkpoint(cp); err != nil {
				return fmt.Errorf("payload: checkpoint: %w", err)
			}
			lastCP = j.end
		}
	}
	return nil
}

func (a *applier) release(j *job, bud budget) {
	if j.out != nil && (j.buf == nil || &j.out[0] != &j.buf[0]) {
		a.pool.put(j.out)
	}
	if j.buf != nil {
		a.pool.put(j.buf)
	}
	j.buf, j.out = nil, nil
	bud.release(j.tokens)
}

func (a *applier) writeOp(target io.WriterAt, j *job) error {
	bs := a.p.bs
	var off uint64
	for _, e := range j.s.op.DstExtents {
		n := e.GetNumBlocks() * bs
		if e.GetStartBlock() == SparseHole {
			off += n
			continue
		}
		pos := e.GetStartBlock() * bs
		if j.s.kind.noOutput {
			if err := a.writeZeros(target, pos, n); err != nil {
				return fmt.Errorf("%w: op %d: %v", ErrWrite, j.idx, err)
			}
		} else {
			b := j.out[off : off+n]
			if _, err := target.WriteAt(b, int64(pos)); err != nil {
				return fmt.Errorf("%w: op %d: %v", ErrWrite, j.idx, err)
			}
			a.hashPartition(pos, b)
		}
		off += n
	}
	return nil
}

func (a *applier) writeZeros(target io.WriterAt, pos, n uint64) error {
	if a.zeros == nil {
		a.zeros = a.pool.get(1 << 20)
		clear(a.zeros)
	}
	for n > 0 {
		k := min(n, uint64(len(a.zeros)))
		if _, err := target.WriteAt(a.zeros[:k], int64(pos)); err != nil {
			return err
		}
		a.hashPartition(pos, a.zeros[:k])
		pos += k
		n -= k
	}
	return nil
}

// hashPartition feeds the partition hash while the operations write the
// partition front to back; otherwise finish reads the partition back.
func (a *applier) hashPartition(pos uint64, b []byte) {
	ni := a.p.newInfo
	if !a.pstream || ni == nil || pos >= ni.GetSize() {
		return
	}
	if pos != a.phashed {
		a.pstream = false
		return
	}
	n := min(uint64(len(b)), ni.GetSize()-pos)
	a.phash.Write(b[:n])
	a.phashed += n
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
		Partition: m.Partitions[a.p.part].Name, Ops: len(a.p.steps)}
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
