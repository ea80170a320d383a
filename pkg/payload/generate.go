package payload

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"

	"github.com/abupdate/update_engine/pkg/bsdiff/bzip2"
	"github.com/abupdate/update_engine/pkg/payload/metadata"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"google.golang.org/protobuf/proto"
)

// Compression names accepted by GenerateOptions.
const (
	CompressXZ    = "xz"    // REPLACE_XZ (standard)
	CompressZstd  = "zstd"  // REPLACE_ZSTD (project extension)
	CompressBzip2 = "bzip2" // REPLACE_BZ (standard; the only compression v1 clients know)
	CompressNone  = "none"  // REPLACE only
)

// GenerateOptions configure Generate.
type GenerateOptions struct {
	New     io.ReaderAt // the new image
	NewSize int64
	// Old is the source image for a delta; nil = full payload. Generate
	// writes a delta with GenerateDelta (major 2: SOURCE_COPY,
	// SOURCE_BSDIFF, BROTLI_BSDIFF, REPLACE_XZ, ZERO; Compression is
	// ignored).
	Old     io.ReaderAt
	OldSize int64
	Keys    []*rsa.PrivateKey // empty: unsigned, unless SignatureSizes
	// SignatureSizes, without Keys, reserves one signature of each size
	// (bytes: 256 for RSA-2048) in key order, filled with zeros: the
	// payload is signed later by InsertSignatures with signatures of
	// GenerateResult.Digests made elsewhere (see sign.go).
	SignatureSizes []int
	Major          uint64 // 1 or 2; 0 means 2. Version 1 is what Flatcar clients read.
	// Compression: CompressXZ (the default for major 2), CompressZstd,
	// CompressBzip2 (the default for major 1, which allows only it and
	// CompressNone) or CompressNone.
	Compression string
	Partition   string // v2 partition name; "" = "root"
	// XZCommand, if set, is an xz program (e.g. "xz", found in PATH) that
	// compresses REPLACE_XZ data instead of the built-in encoder: liblzma
	// makes payloads about 15% smaller. The output is then as deterministic
	// as that program's version.
	XZCommand string
	// ZstdCommand, if set, is a zstd program (e.g. "zstd") that compresses
	// REPLACE_ZSTD data instead of the built-in encoder, at level 19 with
	// the window held to the operation size (at most 8 MiB, what deployed
	// clients accept). Its output is checked like XZCommand's.
	ZstdCommand string
	Version     string
	// ChunkSize: bytes per operation, a multiple of 4096; 0 =
	// XZChunkSize, ZstdChunkSize or DefaultChunkSize.
	ChunkSize int
	Workers   int    // 0 = GOMAXPROCS
	TempDir   string // for the data blobs before the manifest is known
	// Procedures (major 1 full payloads only) are files installed beside
	// the partition: Flatcar's KERNEL (the kernel the new image boots
	// with) and PCR_POLICY procedures, written after the partition's
	// operations in the same operation types, with new_info.
	Procedures []ProcedureFile
	// Progress, if set, is called from Generate's goroutine as operations
	// are finished with the number of new-image (and procedure) bytes
	// they cover.
	Progress func(n int64)
}

// ProcedureFile is the content of one install procedure.
type ProcedureFile struct {
	Type metadata.InstallProcedure_Type // metadata.InstallProcedure_KERNEL or _PCR_POLICY
	Data io.ReaderAt
	Size int64
}

// ErrGenerate: bad generator options.
var ErrGenerate = errors.New("payload: generate")

// GenerateResult summarizes a generated payload.
type GenerateResult struct {
	Size     int64
	OpCounts map[string]int
	Delta    bool
	// Digests are what the signatures sign (nil when unsigned): with
	// SignatureSizes, the digests to sign elsewhere.
	Digests *Digests
	// NoFileMap is, for a delta, why its sources were chosen by content
	// anchors alone (no debugfs, images that are not files, debugfs
	// failing): the delta is correct, only larger. Nil otherwise.
	NoFileMap error
}

const blockSize = 4096

// Operation sizes of full payloads. Each REPLACE_XZ or REPLACE_ZSTD
// operation is a separate stream whose dictionary starts empty, so the
// operation size sets how much a compressor can find: see the README's
// "Payload size" for the measurements. An applier holds an operation's
// output in memory, so larger operations cost its memory, not only time:
// 24 MiB xz operations (dictionary 24 MiB, larger than one `xz -6`
// stream's 8 MiB) make a payload smaller than that stream while the
// apply stays under 48 MiB (32 MiB ones were no smaller and took the
// apply to 64 MiB). zstd operations stay at 8 MiB, windows their own
// size, because engines from before 2026-12 accept windows of 8 MiB only:
// 24 MiB ones with 24 MiB windows (`--chunk-size 25165824`, for fleets
// whose engines are newer) make a payload 0.8% smaller than one
// `zstd -19` stream of the image, where 8 MiB ones are 3.3% larger and
// 24 MiB ones with 8 MiB windows 1.0% larger (20 MiB ones with their own
// windows: 1.2% larger). The applier streams zstd (zstd.go), so the
// operation size does not set its memory.
const (
	DefaultChunkSize = 2 << 20  // REPLACE and REPLACE_BZ
	XZChunkSize      = 24 << 20 // REPLACE_XZ
	ZstdChunkSize    = 8 << 20  // REPLACE_ZSTD
)

// Generate writes a payload for o.New to w. The output is deterministic.
func Generate(ctx context.Context, w io.Writer, o GenerateOptions) (*GenerateResult, error) {
	if len(o.Procedures) > 0 && (o.Major != 1 || o.Old != nil) {
		return nil, fmt.Errorf("%w: install procedures need a major 1 full payload", ErrGenerate)
	}
	if o.Old != nil {
		return GenerateDelta(ctx, w, o)
	}
	comp := o.Compression
	switch {
	case comp == "" && o.Major == 1:
		comp = CompressBzip2
	case comp == "":
		comp = CompressXZ
	case comp != CompressXZ && comp != CompressZstd && comp != CompressBzip2 && comp != CompressNone:
		return nil, fmt.Errorf("%w: compression %q", ErrGenerate, comp)
	case o.Major == 1 && comp != CompressBzip2 && comp != CompressNone:
		return nil, fmt.Errorf("%w: major version 1 payloads can only use bzip2 or none, not %q", ErrGenerate, comp)
	}
	chunk := o.ChunkSize
	if chunk == 0 {
		switch comp {
		case CompressXZ:
			chunk = XZChunkSize
		case CompressZstd:
			chunk = ZstdChunkSize
		default:
			chunk = DefaultChunkSize
		}
	}
	if chunk%blockSize != 0 || chunk <= 0 || chunk > MaxOpBytes {
		return nil, fmt.Errorf("%w: chunk size %d", ErrGenerate, chunk)
	}
	sink, err := newOpSink(o)
	if err != nil {
		return nil, err
	}
	defer sink.close()
	spec := &Spec{Major: o.Major, Partition: o.Partition, Version: o.Version}
	res := &GenerateResult{OpCounts: map[string]int{}}
	add := func(ops *[]*metadata.InstallOperation) func(*metadata.InstallOperation, []byte) error {
		return func(op *metadata.InstallOperation, data []byte) error {
			if err := sink.add(res, op, data); err != nil {
				return err
			}
			*ops = append(*ops, op)
			return nil
		}
	}
	sum, err := chunkImage(ctx, o, comp, chunk, add(&spec.Ops))
	if err != nil {
		return nil, err
	}
	spec.NewInfo = &metadata.PartitionInfo{Size: proto.Uint64(uint64(o.NewSize)), Hash: sum}
	for _, pf := range o.Procedures {
		pr := &metadata.InstallProcedure{Type: pf.Type.Enum()}
		po := o
		po.New, po.NewSize = pf.Data, pf.Size
		if sum, err = chunkImage(ctx, po, comp, chunk, add(&pr.Operations)); err != nil {
			return nil, fmt.Errorf("payload: procedure %v: %w", pf.Type, err)
		}
		pr.NewInfo = &metadata.PartitionInfo{Size: proto.Uint64(uint64(pf.Size)), Hash: sum}
		spec.Procedures = append(spec.Procedures, pr)
	}
	return sink.write(w, spec, res)
}

// chunkImage cuts o.New into operations of chunk bytes, compressed on
// o.Workers cores, and passes them to add in order. It returns the
// image's SHA-256.
func chunkImage(ctx context.Context, o GenerateOptions, comp string, chunk int, add func(*metadata.InstallOperation, []byte) error) ([]byte, error) {
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	n := int((o.NewSize + int64(chunk) - 1) / int64(chunk))
	type result struct {
		op   *metadata.InstallOperation
		data []byte
		err  error
		done chan struct{}
	}
	results := make([]*result, n)
	for i := range results {
		results[i] = &result{done: make(chan struct{})}
	}
	idx := make(chan int)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := 0; w < workers; w++ {
		go func() {
			c := newChunker(comp)
			defer c.close()
			for i := range idx {
				r := results[i]
				r.op, r.data, r.err = c.chunk(ctx, o, i, chunk)
				close(r.done)
			}
		}()
	}
	// Stay at most 2*workers chunks ahead of the writer.
	go feedWindow(ctx, n, 2*workers, func(i int) <-chan struct{} { return results[i].done }, idx)
	newHash := sha256.New()
	for i, r := range results {
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if r.err != nil {
			return nil, r.err
		}
		if err := hashNew(o, i, chunk, newHash); err != nil {
			return nil, err
		}
		if err := add(r.op, r.data); err != nil {
			return nil, err
		}
		r.data = nil
	}
	return newHash.Sum(nil), nil
}

// opSink spools generated operations' data blobs to a temp file, in
// operation order, so a payload is written once the manifest is complete.
type opSink struct {
	tmp      *os.File
	off      uint64 // data offset of the next blob
	signer   signer
	progress func(int64)
}

func newOpSink(o GenerateOptions) (*opSink, error) {
	if len(o.Keys) > 0 && len(o.SignatureSizes) > 0 {
		return nil, fmt.Errorf("%w: keys and signature sizes: sign now or later, not both", ErrGenerate)
	}
	for _, n := range o.SignatureSizes {
		if n <= 0 || n > 4096 {
			return nil, fmt.Errorf("%w: signature size %d (256 for RSA-2048, 512 for RSA-4096)", ErrGenerate, n)
		}
	}
	tmp, err := os.CreateTemp(o.TempDir, "payload-blobs-*")
	if err != nil {
		return nil, err
	}
	return &opSink{tmp: tmp, signer: signer{keys: o.Keys, sizes: o.SignatureSizes}, progress: o.Progress}, nil
}

// add spools op's blob (if any), which gets the next data offset and its
// SHA-256, and res counts the op type. The caller appends op to its list.
func (s *opSink) add(res *GenerateResult, op *metadata.InstallOperation, data []byte) error {
	if len(data) > 0 {
		op.DataOffset, op.DataLength = proto.Uint64(s.off), proto.Uint64(uint64(len(data)))
		h := sha256.Sum256(data)
		op.DataSha256Hash = h[:]
		if _, err := s.tmp.Write(data); err != nil {
			return fmt.Errorf("payload: spool operation data: %w", err)
		}
		s.off += uint64(len(data))
	}
	res.OpCounts[op.GetType().String()]++
	if s.progress != nil {
		var blocks uint64
		for _, e := range op.DstExtents {
			blocks += e.GetNumBlocks()
		}
		s.progress(int64(blocks) * blockSize)
	}
	return nil
}

// write writes the payload of spec with the spooled blobs, signed (or
// with placeholders) as the options said.
func (s *opSink) write(w io.Writer, spec *Spec, res *GenerateResult) (*GenerateResult, error) {
	if _, err := s.tmp.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	sz, d, err := writePayload(w, spec, s.tmp, s.signer)
	if err != nil {
		return nil, err
	}
	res.Size, res.Digests = sz, d
	return res, nil
}

func (s *opSink) close() {
	s.tmp.Close()
	os.Remove(s.tmp.Name())
}

// hashNew adds chunk i of the new image to h (sequentially, in the
// writer's goroutine).
func hashNew(o GenerateOptions, i, chunk int, h io.Writer) error {
	start := int64(i) * int64(chunk)
	_, err := io.Copy(h, io.NewSectionReader(o.New, start, min(int64(chunk), o.NewSize-start)))
	return err
}

// chunker turns one chunk of the image into an operation; one per worker.
type chunker struct {
	comp string
	buf  []byte
	zenc *zstd.Encoder
	xbuf bytes.Buffer
}

func newChunker(comp string) *chunker { return &chunker{comp: comp} }

func (c *chunker) close() {
	if c.zenc != nil {
		c.zenc.Close()
	}
}

func (c *chunker) chunk(ctx context.Context, o GenerateOptions, i, chunk int) (*metadata.InstallOperation, []byte, error) {
	start := int64(i) * int64(chunk)
	n := int(min(int64(chunk), o.NewSize-start))
	if cap(c.buf) < chunk {
		c.buf = make([]byte, chunk)
	}
	b := c.buf[:n]
	if _, err := o.New.ReadAt(b, start); err != nil && !(errors.Is(err, io.EOF) && n > 0) {
		return nil, nil, fmt.Errorf("payload: read new image at %d: %w", start, err)
	}
	blocks := uint64((n + blockSize - 1) / blockSize)
	ext := []*metadata.Extent{{StartBlock: proto.Uint64(uint64(start) / blockSize), NumBlocks: proto.Uint64(blocks)}}
	op := &metadata.InstallOperation{DstExtents: ext}
	// ZERO only in extension payloads: a full payload is minor version 0,
	// where the reference generator and checker (AOSP paycheck) allow the
	// REPLACE family only, as early clients mishandled ZERO. Zeros cost a
	// few hundred bytes compressed anyway.
	if c.comp == CompressZstd && isZero(b) {
		op.Type = OpZero.Enum()
		return op, nil, nil
	}
	best := append([]byte(nil), b...)
	op.Type = OpReplace.Enum()
	var alt []byte
	var altType metadata.InstallOperation_Type
	switch c.comp {
	case CompressXZ:
		if err := compressXZ(ctx, &c.xbuf, b, chunk, o.XZCommand); err != nil {
			return nil, nil, err
		}
		alt, altType = c.xbuf.Bytes(), OpReplaceXZ
	case CompressZstd:
		if o.ZstdCommand != "" {
			if err := compressZstdCommand(ctx, &c.xbuf, b, chunk, o.ZstdCommand); err != nil {
				return nil, nil, err
			}
			alt, altType = c.xbuf.Bytes(), OpReplaceZstd
			break
		}
		if c.zenc == nil {
			z, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
				zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(chunkWindow(chunk)), zstd.WithZeroFrames(true),
				// No frame checksum: the op's SHA-256 covers the frame and the
				// partition hash the output; XXH64 would only cost decode time.
				zstd.WithEncoderCRC(false))
			if err != nil {
				return nil, nil, err
			}
			c.zenc = z
		}
		alt, altType = c.zenc.EncodeAll(b, nil), OpReplaceZstd
	case CompressBzip2:
		c.xbuf.Reset()
		bw := bzip2.NewWriter(&c.xbuf)
		if _, err := bw.Write(b); err != nil {
			return nil, nil, err
		}
		if err := bw.Close(); err != nil {
			return nil, nil, err
		}
		alt, altType = c.xbuf.Bytes(), OpReplaceBZ
	}
	if alt != nil && len(alt) < len(best) {
		best = append(best[:0], alt...)
		op.Type = altType.Enum()
	}
	return op, best, nil
}

// compressXZ replaces buf's contents with b as one xz stream (CRC32
// check, dictionary dict bytes), made by the built-in encoder or, when
// command is set, by that xz program (killed when ctx ends).
func compressXZ(ctx context.Context, buf *bytes.Buffer, b []byte, dict int, command string) error {
	buf.Reset()
	if command != "" {
		// -6 with the dictionary cut to the data, as the built-in encoder
		// does: a decoder then needs no more memory than the output.
		args := []string{"--format=xz", "--check=crc32", "--lzma2=preset=6,dict=" + strconv.Itoa(max(dict, 4096)),
			"--threads=1", "--stdout", "--compress", "-"}
		if err := runCompressor(ctx, buf, b, command, args); err != nil {
			return err
		}
		// Another program's output is checked the way a client will use
		// it: decoded into the op's extents, it must give b back.
		out := make([]byte, len(b))
		if err := runXZ(&decoder{}, nil, buf.Bytes(), out); err != nil || !bytes.Equal(out, b) {
			return fmt.Errorf("%w: %s: its output does not decode to its input (%v)", ErrGenerate, command, err)
		}
		return nil
	}
	xw, err := xz.WriterConfig{DictCap: max(dict, 4096), CheckSum: xz.CRC32}.NewWriter(buf)
	if err != nil {
		return err
	}
	if _, err := xw.Write(b); err != nil {
		return err
	}
	return xw.Close()
}

// maxZstdWindow is the largest zstd window the applier accepts: 32 MiB,
// the window of a 24 MiB operation. The applier's stream decoder holds one
// window of history (zstd.go). Engines before 2026-12 accepted 8 MiB
// (RFC 8878's recommended decoder minimum), which the default 8 MiB
// operations keep to.
const maxZstdWindow = 32 << 20

// zstdCommandArgs are the zstd program's settings: level 19 (--ultra -22
// with the same window made 24 MiB operations 0.3% smaller, and slower)
// with the window log the operation's (at most
// maxZstdWindow's), the size known in advance (written into the frame
// header), no XXH64 (the op's SHA-256 covers the data).
func zstdCommandArgs(size, chunk int) []string {
	wlog := 10
	for 1<<wlog < chunk && 1<<wlog < maxZstdWindow {
		wlog++
	}
	return []string{"-q", "-T1", "-19", "--zstd=wlog=" + strconv.Itoa(wlog), "--no-check",
		"--stream-size=" + strconv.Itoa(size), "-c", "-"}
}

// compressZstdCommand replaces buf's contents with b as one zstd frame
// made by the zstd program command (killed when ctx ends), checked by
// decoding it as a client will.
func compressZstdCommand(ctx context.Context, buf *bytes.Buffer, b []byte, chunk int, command string) error {
	buf.Reset()
	if err := runCompressor(ctx, buf, b, command, zstdCommandArgs(len(b), chunk)); err != nil {
		return err
	}
	out := make([]byte, len(b))
	if err := decodeZstd(buf.Bytes(), out); err != nil || !bytes.Equal(out, b) {
		return fmt.Errorf("%w: %s: its output does not decode to its input (%v)", ErrGenerate, command, err)
	}
	return nil
}

// runCompressor runs command args with b on its stdin and its stdout into
// buf.
func runCompressor(ctx context.Context, buf *bytes.Buffer, b []byte, command string, args []string) error {
	cmd := exec.CommandContext(ctx, command, args...)
	cmd.Stdin, cmd.Stdout = bytes.NewReader(b), buf
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s: %v: %s", ErrGenerate, command, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}

// chunkWindow is the zstd window: the smallest power of two ≥ chunk, at
// most maxZstdWindow (larger --chunk-size operations would otherwise get
// a window the appliers refuse).
func chunkWindow(chunk int) int {
	w := zstd.MinWindowSize
	for w < chunk && w < maxZstdWindow {
		w <<= 1
	}
	return w
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// feedWindow sends 0..n-1 to out in order and closes it, staying at most
// window items ahead of the consumer: item i waits for done(i-window).
// It stops when ctx ends.
func feedWindow(ctx context.Context, n, window int, done func(i int) <-chan struct{}, out chan<- int) {
	defer close(out)
	for i := range n {
		if i >= window {
			select {
			case <-done(i - window):
			case <-ctx.Done():
				return
			}
		}
		select {
		case out <- i:
		case <-ctx.Done():
			return
		}
	}
}
