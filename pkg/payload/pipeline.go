package payload

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"time"
)

// The pipeline of one run, each stage a goroutine, jobs in data order:
//
//	read ──▶ workers (hash check, decode; any order) ──▶ write (in order) ──▶ finish (in order)
//	  └────▶ whole-payload hasher (in order, v2 signed payloads only)
//
// read owns the stream, the signed hash and the memory budget's acquiring
// side; the whole hasher owns a.whole (read owns it when there is no
// hasher); write owns the target's writes (a progressive job's output is
// written while its worker still decodes the rest); finish owns the
// partition hash (of what was written, so hashing overlaps the next
// write), buffer release, progress and checkpoints. A job's buffers are
// released by finish after the whole hasher closed job.hashed. A streamed
// job (a REPLACE_ZSTD of more than 8 MiB) has no output buffer: its
// worker decodes it with the run's one stream decoder, in payload order,
// into pieces that the writer writes and finish hashes and hands back
// (zstd.go).

// job is one operation in flight.
type job struct {
	idx    int
	s      *step
	buf    []byte // pooled; data is buf[:data_length]
	out    []byte // decoded output, len dstBytes; may alias buf
	end    int64  // payload offset after this op's data
	tokens int
	dur    time.Duration // worker and writer time, when Options.OpDuration is set
	err    error
	done   chan struct{} // closed by a worker (or read) when err/out are final
	prog   *progress     // set for progressive ops that are written
	hashed chan struct{} // closed when the whole-payload hash has the data

	// A streamed op's output, in pieces (closed by its worker), and its
	// turn at the run's stream decoder: it waits for turn (the previous
	// streamed op's turnDone) and closes turnDone when done with it.
	pieces         chan piece
	turn, turnDone chan struct{}

	wholeState, signedState []byte // hash states at end, for checkpoints
}

// written is a part of a job's output that the writer wrote: finish
// hashes it, and ends the job after its last part.
type written struct {
	j        *job
	from, to uint64 // output bytes
	last     bool
	piece    []byte // a streamed op's bytes [from, to); else they are in j.out
}

// bytes returns output bytes [lo, hi) of wr's job (within wr's).
func (wr written) bytes(lo, hi uint64) []byte {
	if wr.piece != nil {
		return wr.piece[lo-wr.from : hi-wr.from]
	}
	return wr.j.out[lo:hi]
}

// progress is how much of a job's output its worker has finished: the
// writer writes and hashes that much while the rest decodes, so a large
// operation's write and hash overlap its decoding instead of following it.
type progress struct {
	n    atomic.Int64
	wake chan struct{} // capacity 1: "n moved"
}

// progressPiece is the least the writer writes of a decoding job at once,
// to keep direct writes large.
const progressPiece = 2 << 20

func newProgress() *progress { return &progress{wake: make(chan struct{}, 1)} }

// set runs in the worker.
func (p *progress) set(n int) {
	p.n.Store(int64(n))
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// tail is what the reader learned after the last operation.
type tail struct {
	err          error
	signedDigest []byte
	sigBlob      []byte
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (a *applier) run(ctx context.Context, r io.Reader, target io.WriterAt, start int) (*Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.states = [2][]byte{}
	if a.o.Checkpoint != nil {
		a.states[0] = marshalHash(a.whole)
		if a.signed != nil {
			a.states[1] = marshalHash(a.signed)
		}
	}
	workers := a.o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	bud, err := a.startBudget()
	if err != nil {
		return nil, err
	}
	defer a.zs.close()
	if a.o.MemoryLimit != nil {
		a.o.MemoryLimit(a.memoryLimit())
	}
	q := 2*workers + 2
	order := make(chan *job, q)
	jobs := make(chan *job, q)
	fin := make(chan written, 4*q)
	tailc := make(chan tail, 1)
	workersDone := make(chan struct{})
	for w := 0; w < workers; w++ {
		go func() {
			defer func() { workersDone <- struct{}{} }()
			if a.o.WorkerInit != nil {
				a.o.WorkerInit()
			}
			d := &decoder{src: a.o.Source, bs: a.p.bs}
			defer d.close()
			for j := range jobs {
				j.err = a.exec(ctx, d, j)
				close(j.done)
			}
		}()
	}
	go func() {
		defer close(jobs)
		defer close(order)
		tailc <- a.read(ctx, r, start, bud, order, jobs)
	}()
	var finErr error
	finDone := make(chan struct{})
	go func() {
		defer close(finDone)
		finErr = a.finishJobs(ctx, target, fin, bud)
		if finErr != nil {
			cancel()
		}
	}()

	werr := a.write(ctx, target, order, fin)
	close(fin)
	<-finDone
	if werr != nil || finErr != nil {
		cancel()
		for j := range order { // let the reader finish
			<-j.done
		}
	}
	for w := 0; w < workers; w++ {
		<-workersDone
	}
	t := <-tailc
	switch {
	case finErr != nil:
		return nil, finErr
	case werr != nil:
		return nil, werr
	case t.err != nil:
		return nil, t.err
	}
	return a.finish(target, t)
}

// startBudget makes the run's memory budget and, when the plan has
// streamed operations, its stream, whose reserve comes out of the budget.
func (a *applier) startBudget() (budget, error) {
	mem := a.o.MemoryBudget
	if mem <= 0 {
		mem = a.p.defaultBudget()
	}
	a.zs = nil
	if d := a.p.maxStreamDst(); d > 0 {
		zs, err := newZstdStream(&a.pool)
		if err != nil {
			return nil, err
		}
		a.zs, a.turn = zs, closedChan
		mem -= streamReserve(d)
	}
	bud := newBudget(max(budgetUnit, mem))
	a.pool.allow(int64(cap(bud)) * budgetUnit)
	return bud, nil
}

// processRoom is what an apply's process needs besides the run's buffers:
// the Go runtime, the decoders' state (a delta's bzip2 and brotli
// streams, zstd's DecodeAll tables) and garbage between collections.
const processRoom = 16 << 20

// memoryLimit is Options.MemoryLimit's figure, once startBudget has set
// the pool's limit: the pool, the stream's window and processRoom.
func (a *applier) memoryLimit() int64 {
	n := a.pool.limitBytes() + processRoom
	if d := a.p.maxStreamDst(); d > 0 {
		n += streamReserve(d) - streamPieces*streamPiece // the pieces are in the pool
	}
	return n
}

// Default memory budget: 16 MiB, raised (up to maxAutoBudget) so that
// two of the payload's largest operations fit, which lets two cores
// decode 16 MiB xz operations side by side; a 24 MiB xz operation
// (XZChunkSize) and its data fit.
const (
	minAutoBudget = 16 << 20
	maxAutoBudget = 48 << 20
	streamData    = 12 << 20
)

// A plan with streamed operations has its stream's reserve and at least
// streamData for the operations' data: the data of the one decoding and
// of the next (24 MiB zstd operations of an OS image carry ~5 MiB each).
func (p *plan) defaultBudget() int64 {
	var most int64
	for i := range p.steps {
		s := &p.steps[i]
		most = max(most, s.bufNeed())
	}
	b := min(maxAutoBudget, max(minAutoBudget, 2*most))
	if d := p.maxStreamDst(); d > 0 {
		b = max(b, streamReserve(d)+streamData)
	}
	return b
}

// maxStreamDst is the largest output of the plan's streamed operations
// that are applied (0: none).
func (p *plan) maxStreamDst() uint64 {
	var most uint64
	for i := range p.steps {
		if s := &p.steps[i]; s.streams() {
			most = max(most, s.dstBytes)
		}
	}
	return most
}

// streams says whether the step is decoded by the run's stream (zstd.go).
func (s *step) streams() bool {
	return s.kind.streamed && s.emits() && s.dstBytes > streamAbove
}

// memNeed is the bytes a step holds in flight: its buffers (bufNeed) and
// its decoder's room. The room is not in the default budget, which two
// operations' buffers set: an operation with room leaves the others less
// (one needing more than the budget runs alone).
func (s *step) memNeed() int64 {
	need := s.bufNeed()
	if s.emits() {
		need += s.kind.room
	}
	return units(need)
}

// bufNeed is a step's data and output (a streamed op's output is in the
// run's stream reserve), in budget units.
func (s *step) bufNeed() int64 {
	dl := int64(s.op.GetDataLength())
	need := dl
	if s.emits() && !s.kind.noOutput && !s.streams() {
		if s.kind.inPlace {
			need = max(dl, int64(s.dstBytes))
		} else {
			need += int64(s.dstBytes)
		}
	}
	return units(need)
}

// units rounds n up to whole budget units, as acquire takes them.
func units(n int64) int64 {
	return (n + budgetUnit - 1) / budgetUnit * budgetUnit
}

// read is the reader goroutine: it reads each operation's data, hashes the
// stream and hands jobs to the workers and, in order, to the writer.
func (a *applier) read(ctx context.Context, r io.Reader, start int, bud budget, order, jobs chan<- *job) tail {
	h := a.startWholeHasher(cap(order) + 1)
	defer h.stop()
	for i := start; i < len(a.p.steps); i++ {
		if err := ctx.Err(); err != nil {
			return tail{err: err}
		}
		j, err := a.readOp(ctx, r, i, bud, h)
		if err != nil {
			return tail{err: err}
		}
		if j.err != nil { // a short read: the writer reports it in order
			select {
			case order <- j:
			case <-ctx.Done():
			}
			return tail{}
		}
		if err := a.dispatch(ctx, j, order, jobs); err != nil {
			return tail{err: err}
		}
	}
	h.stop()
	return a.readTail(r)
}

// wholeHasher is the goroutine that hashes a v2 signed payload's data for
// the whole-payload hash (the reader hashes the signed bytes): the data is
// hashed twice, on two cores. Without a signed hash the reader does it.
type wholeHasher struct {
	q    chan *job
	done chan struct{}
}

func (a *applier) startWholeHasher(queue int) *wholeHasher {
	h := &wholeHasher{done: make(chan struct{})}
	if a.signed == nil {
		close(h.done)
		return h
	}
	ckpt := a.o.Checkpoint != nil
	h.q = make(chan *job, queue)
	go func(q <-chan *job) {
		defer close(h.done)
		for j := range q {
			a.whole.Write(j.buf[:j.s.op.GetDataLength()])
			if ckpt {
				j.wholeState = marshalHash(a.whole)
			}
			close(j.hashed)
		}
	}(h.q)
	return h
}

// stop waits for the hasher to finish what it was given; it may be called
// twice.
func (h *wholeHasher) stop() {
	if h.q != nil {
		close(h.q)
		h.q = nil
	}
	<-h.done
}

// readOp makes step i's job: it takes the step's memory from bud, reads
// its data and hashes it. A short read gives a job whose err is set and
// done closed.
func (a *applier) readOp(ctx context.Context, r io.Reader, i int, bud budget, h *wholeHasher) (*job, error) {
	ckpt := a.o.Checkpoint != nil
	s := &a.p.steps[i]
	j := &job{idx: i, s: s, done: make(chan struct{}), hashed: closedChan}
	if s.kind.progressive && s.emits() {
		j.prog = newProgress()
	}
	dl := int64(s.op.GetDataLength())
	var err error
	if j.tokens, err = bud.acquire(ctx, s.memNeed()); err != nil {
		return nil, err
	}
	if dl > 0 {
		n := dl
		if s.emits() && s.kind.inPlace {
			n = int64(s.dstBytes)
		}
		j.buf = a.pool.get(int(n))
		if _, err := io.ReadFull(r, j.buf[:dl]); err != nil {
			j.err = fmt.Errorf("%w: op %d data at offset %d: %v", ErrTruncated, i, a.off, err)
			close(j.done)
			return j, nil
		}
		if a.signed != nil {
			a.signed.Write(j.buf[:dl])
			if ckpt {
				j.signedState = marshalHash(a.signed)
			}
			j.hashed = make(chan struct{})
			h.q <- j // the hasher never waits on anything else
		} else {
			a.whole.Write(j.buf[:dl])
		}
		a.off += dl
	}
	j.end = a.off
	if s.streams() {
		j.pieces = make(chan piece, streamPieces)
		j.turn, j.turnDone = a.turn, make(chan struct{})
		a.turn = j.turnDone
	}
	if dl == 0 {
		j.hashed = nil // the hash states are those after the previous op
	} else if ckpt && a.signed == nil {
		j.wholeState = marshalHash(a.whole)
	}
	return j, nil
}

// dispatch hands j to the writer (in order) and, when it has data to
// check or output to make, to the workers.
func (a *applier) dispatch(ctx context.Context, j *job, order, jobs chan<- *job) error {
	select {
	case order <- j:
	case <-ctx.Done():
		return ctx.Err()
	}
	s := j.s
	if s.op.GetDataLength() == 0 && (!s.emits() || s.kind.noOutput) {
		close(j.done)
		return nil
	}
	select {
	case jobs <- j:
		return nil
	case <-ctx.Done():
		j.err = ctx.Err()
		close(j.done)
		return ctx.Err()
	}
}

// readTail reads what follows the operations' data: the signature blob
// and then nothing.
func (a *applier) readTail(r io.Reader) tail {
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
func (a *applier) exec(ctx context.Context, d *decoder, j *job) error {
	if a.o.OpDuration != nil {
		t0 := time.Now()
		defer func() { j.dur += time.Since(t0) }()
	}
	if j.pieces != nil {
		defer close(j.pieces)
		// The next streamed op goes after this one's turn, taken or not.
		defer func() { <-j.turn; close(j.turnDone) }()
	}
	s := j.s
	if dl := s.op.GetDataLength(); dl > 0 {
		sum := sha256.Sum256(j.buf[:dl])
		if string(sum[:]) != string(s.op.GetDataSha256Hash()) {
			return fmt.Errorf("%w: op %d", ErrOperationHashMismatch, j.idx)
		}
	}
	if !s.emits() || s.kind.noOutput {
		return nil
	}
	if s.streams() {
		<-j.turn
		if err := a.zs.decode(ctx, j.buf[:s.op.GetDataLength()], s.dstBytes, j.pieces); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: op %d (%v): %v", ErrOperationExecution, j.idx, s.op.GetType(), err)
		}
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
	if j.prog != nil {
		d.progress = j.prog.set
		defer func() { d.progress = nil }()
	}
	if err := s.kind.run(d, s.op, data, j.out); err != nil {
		if errors.Is(err, ErrOperationHashMismatch) || errors.Is(err, ErrNoSource) {
			return fmt.Errorf("op %d: %w", j.idx, err)
		}
		return fmt.Errorf("%w: op %d (%v): %v", ErrOperationExecution, j.idx, s.op.GetType(), err)
	}
	return nil
}

// write is the writer: it takes jobs in order, writes them and hands what
// it wrote to finish. It stops at the first failed job, so nothing after
// it is written (of that job, only what its verified data decoded to).
func (a *applier) write(ctx context.Context, target io.WriterAt, order <-chan *job, fin chan<- written) error {
	for j := range order {
		var w io.WriterAt
		switch {
		case j.s.write:
			w = target
		case j.s.file >= 0:
			w = a.files[j.s.file].t
		}
		if err := a.writeJob(ctx, w, j, fin); err != nil {
			return err
		}
	}
	return nil
}

// writeJob writes j's output to w (nil: j writes nothing) once its worker
// is done with it or, for a progressive job, piece by piece as it decodes.
func (a *applier) writeJob(ctx context.Context, w io.WriterAt, j *job, fin chan<- written) error {
	if j.pieces != nil {
		return a.writePieces(ctx, w, j, fin)
	}
	var done uint64
	if j.prog != nil && w != nil {
		for decoding := true; decoding; {
			select {
			case <-j.done:
				decoding = false
			case <-ctx.Done():
				return ctx.Err()
			case <-j.prog.wake:
				n := uint64(j.prog.n.Load()) &^ (align - 1)
				if n-done >= progressPiece {
					wr := written{j: j, from: done, to: n}
					if err := a.emitTimed(w, wr); err != nil {
						return err
					}
					fin <- wr
					done = n
				}
			}
		}
	} else {
		<-j.done
	}
	if j.err != nil {
		return j.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	wr := written{j: j, from: done, to: done, last: true}
	if w != nil {
		wr.to = j.s.dstBytes
		if err := a.emitTimed(w, wr); err != nil {
			return err
		}
	}
	fin <- wr // finish drains it
	return nil
}

// writePieces writes a streamed job's pieces as its worker decodes them
// and hands each to finish, which hashes it and gives it back to the
// stream. A failed job's pieces so far were decoded from verified data.
func (a *applier) writePieces(ctx context.Context, w io.WriterAt, j *job, fin chan<- written) error {
	for {
		var p piece
		var ok bool
		select {
		case p, ok = <-j.pieces:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			break
		}
		wr := written{j: j, from: p.from, to: p.from + uint64(len(p.b)), piece: p.b}
		if err := a.emitTimed(w, wr); err != nil {
			return err
		}
		fin <- wr
	}
	<-j.done
	if j.err != nil {
		return j.err
	}
	fin <- written{j: j, from: j.s.dstBytes, to: j.s.dstBytes, last: true}
	return nil
}

// emitTimed writes wr's bytes to w, its time added to the job's when
// Options.OpDuration is set.
func (a *applier) emitTimed(w io.WriterAt, wr written) error {
	if a.o.OpDuration != nil {
		t0 := time.Now()
		defer func() { wr.j.dur += time.Since(t0) }()
	}
	return a.eachOut(wr, func(pos uint64, b []byte) error {
		if _, err := w.WriteAt(b, int64(pos)); err != nil {
			return fmt.Errorf("%w: op %d: %v", ErrWrite, wr.j.idx, err)
		}
		return nil
	})
}

// eachOut calls f with wr's bytes and where its job's destination extents
// put them in the partition (zeros, at most 1 MiB at a time, for ZERO and
// DISCARD).
func (a *applier) eachOut(wr written, f func(pos uint64, b []byte) error) error {
	bs := a.p.bs
	var off uint64
	for _, e := range wr.j.s.op.DstExtents {
		n := e.GetNumBlocks() * bs
		lo, hi := max(off, wr.from), min(off+n, wr.to)
		if lo < hi && e.GetStartBlock() != SparseHole {
			pos := e.GetStartBlock()*bs + lo - off
			if err := a.outRange(wr, pos, lo, hi, f); err != nil {
				return err
			}
		}
		off += n
	}
	return nil
}

// outRange calls f with output bytes [lo, hi) at partition offset pos.
func (a *applier) outRange(wr written, pos, lo, hi uint64, f func(pos uint64, b []byte) error) error {
	if !wr.j.s.kind.noOutput {
		return f(pos, wr.bytes(lo, hi))
	}
	for k := uint64(0); k < hi-lo; {
		c := min(hi-lo-k, uint64(len(a.zeros)))
		if err := f(pos+k, a.zeros[:c]); err != nil {
			return err
		}
		k += c
	}
	return nil
}

// finishJobs runs after the writer, in order: partition hash, buffer
// release, progress and checkpoints. After an error it only releases.
func (a *applier) finishJobs(ctx context.Context, target io.WriterAt, fin <-chan written, bud budget) error {
	var lastCP int64 = -1
	wholeState, signedState := a.initStates()
	var err error
	for wr := range fin {
		j := wr.j
		if err == nil && j.s.write {
			a.eachOut(wr, func(pos uint64, b []byte) error {
				a.hashPartition(pos, b)
				return nil
			})
		}
		if wr.piece != nil {
			a.zs.free <- wr.piece // room for every piece: never blocks
		}
		if !wr.last {
			continue
		}
		if j.hashed != nil {
			<-j.hashed
			wholeState, signedState = j.wholeState, j.signedState
		}
		a.release(j, bud)
		if err != nil {
			continue
		}
		if a.o.Progress != nil {
			a.o.Progress(j.end)
		}
		if a.o.OpDuration != nil {
			a.o.OpDuration(j.s.op.GetType().String(), j.dur)
		}
		// No checkpoint after a file operation (Options.Files); one
		// right before the first.
		if a.o.Checkpoint != nil && j.idx < a.p.firstFile &&
			(a.o.CheckpointBytes <= 0 || lastCP < 0 || j.end-lastCP >= a.o.CheckpointBytes || j.idx == a.p.firstFile-1) {
			if s, ok := target.(syncer); ok {
				if e := s.Sync(); e != nil {
					err = fmt.Errorf("%w: sync: %v", ErrWrite, e)
					continue
				}
			}
			cp := &Checkpoint{NextOp: j.idx + 1, Offset: j.end, Metadata: a.p.m.Raw,
				PayloadHash: wholeState, SignedHash: signedState,
				PartitionStreaming: a.pstream, PartitionHashed: a.phashed}
			if a.pstream {
				cp.PartitionHash = marshalHash(a.phash)
			}
			if e := a.o.Checkpoint(cp); e != nil {
				err = fmt.Errorf("payload: checkpoint: %w", e)
				continue
			}
			lastCP = j.end
		}
	}
	return err
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

// initStates are the hash states when the run started.
func (a *applier) initStates() ([]byte, []byte) { return a.states[0], a.states[1] }
