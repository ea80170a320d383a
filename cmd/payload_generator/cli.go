package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/abupdate/update_engine/pkg/atomicfile"
	"github.com/abupdate/update_engine/pkg/payload"
	"github.com/abupdate/update_engine/pkg/payload/metadata"
)

const usage = `usage:
  payload_generator generate --new IMAGE [--old IMAGE [--source-version V]] --key KEY.pem|--unsigned [--version V]
                             [--compression xz|zstd|bzip2|none] [--xz-command xz|builtin] [--zstd-command zstd|builtin] [--chunk-size N] [--major 1|2] [--partition NAME]
                             [--kernel FILE] [--pcr-policy FILE] (--major 1) -o OUT
  payload_generator show PAYLOAD
  payload_generator verify PAYLOAD [--key PUB.pem] [--version V] [--source FILE|DEV [--scratch DIR]] [--target DEV]
  payload_generator apply PAYLOAD|- --key PUB.pem|--insecure-skip-signature [--version V] --target FILE|DEV [--source FILE|DEV]
  payload_generator keygen --private KEY.pem --public PUB.pem [--bits 2048]
  payload_generator sign PAYLOAD --signature SIG [--signature SIG...] [--metadata-signature SIG...] [--key PUB.pem]

Two-step signing (keys offline or in an HSM): generate ... --out-hash HASH [--out-metadata-hash MHASH]
[--signature-size 256[:512...]] writes the payload with zeroed signatures of those sizes (one per key,
oldest key first) and the SHA-256 digests to sign; sign each with e.g.
  openssl pkeyutl -sign -inkey KEY.pem -pkeyopt digest:sha256 -in HASH -out SIG
and put them in place with sign (major 2 needs a metadata signature per key too).
`

// Main runs the command line args (without the program name) and returns
// the exit status.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmds := map[string]func(context.Context, []string, io.Reader, io.Writer) error{
		"generate": func(ctx context.Context, a []string, in io.Reader, out io.Writer) error {
			return cmdGenerate(ctx, a, in, out, stderr)
		},
		"show": cmdShow, "verify": cmdVerify, "apply": cmdApply, "keygen": cmdKeygen, "sign": cmdSign,
	}
	f := cmds[args[0]]
	if f == nil {
		fmt.Fprintf(stderr, "payload_generator: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err := f(ctx, args[1:], stdin, stdout); err != nil {
		if h := (*helpError)(nil); errors.As(err, &h) {
			fmt.Fprintf(stdout, "%s\nflags of %s:\n%s", usage, args[0], h.flags)
			return 0
		}
		if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "payload_generator %s: %v\n%s", args[0], err, usage)
			return 2
		}
		fmt.Fprintf(stderr, "payload_generator %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

var errUsage = errors.New("bad usage")

// Errors for a missing key: signatures are skipped only when asked by name.
var (
	errNoSigningKey = errors.New("no --key: pass --unsigned to write an unsigned payload")
	errNoVerifyKey  = errors.New("no --key: pass --insecure-skip-signature to apply a payload whose signature is not checked")
)

// helpError is -h/--help: Main prints the usage and the command's flags
// to stdout and exits 0.
type helpError struct{ flags string }

func (*helpError) Error() string { return "help requested" }

// parse parses flags that may come before or after the positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			var b strings.Builder
			fs.SetOutput(&b)
			fs.PrintDefaults()
			return nil, &helpError{flags: b.String()}
		} else if err != nil {
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// Metadata is OUT.json, read by the Omaha dev server (RULES.md "Shared
// contracts").
type Metadata struct {
	File          string `json:"file"`
	Version       string `json:"version"`
	SourceVersion string `json:"source_version"`
	Delta         bool   `json:"delta"`
	Size          int64  `json:"size"`
	SHA256        string `json:"sha256"`
	SHA1          string `json:"sha1"`
	AppID         string `json:"appid"`
	Track         string `json:"track"`
}

// generateFlags is generate's command line.
type generateFlags struct {
	newImg, oldImg, version, srcVersion, comp, xzCmd, zstdCmd string
	keys                                                      multiFlag
	unsigned                                                  bool
	chunkSize                                                 int
	major                                                     uint64
	part, appid, track, out, kernel, pcrPolicy                string
	outHash, outMetaHash, sigSizes                            string
}

func (g *generateFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.newImg, "new", "", "new image")
	fs.StringVar(&g.oldImg, "old", "", "old image (delta)")
	fs.Var(&g.keys, "key", "private key PEM (repeat, or several keys in one file, for key rotation)")
	fs.BoolVar(&g.unsigned, "unsigned", false, "write an unsigned payload (without --key): clients with a key refuse it")
	fs.StringVar(&g.version, "version", "", "version of the new image, signed inside the payload")
	fs.StringVar(&g.srcVersion, "source-version", "", "version of the old image (delta), for OUT.json")
	fs.StringVar(&g.srcVersion, "old-version", "", "same as --source-version")
	fs.StringVar(&g.comp, "compression", "", "xz (default for --major 2), zstd (project extension), bzip2 (default for --major 1) or none")
	fs.StringVar(&g.xzCmd, "xz-command", defaultCommand("xz"), `compress REPLACE_XZ data with this xz program (default "xz" when in PATH: ~15% smaller payloads than the built-in encoder); "builtin" for the built-in encoder`)
	fs.StringVar(&g.zstdCmd, "zstd-command", defaultCommand("zstd"), `compress REPLACE_ZSTD data with this zstd program at -19, window the operation's size, ≤ 32 MiB (default "zstd" when in PATH: smaller payloads than the built-in encoder); "builtin" for the built-in encoder`)
	fs.IntVar(&g.chunkSize, "chunk-size", 0, "bytes per full-payload operation, a multiple of 4096 (default 24 MiB for xz, 8 MiB for zstd, else 2 MiB; 25165824 makes zstd payloads 4% smaller, for engines from 2026-12 on)")
	fs.Uint64Var(&g.major, "major", 2, "payload major version, 1 (Flatcar) or 2")
	fs.StringVar(&g.part, "partition", "root", "v2 partition name")
	fs.StringVar(&g.appid, "appid", "", "Omaha app id for OUT.json")
	fs.StringVar(&g.track, "track", "", "Omaha track for OUT.json")
	fs.StringVar(&g.out, "o", "", "output payload")
	fs.StringVar(&g.kernel, "kernel", "", "kernel the new image boots with: a KERNEL install procedure (--major 1; Flatcar installs it as /boot/flatcar/vmlinuz-a|b)")
	fs.StringVar(&g.pcrPolicy, "pcr-policy", "", "TPM PCR policy zip: a PCR_POLICY install procedure (--major 1)")
	fs.StringVar(&g.outHash, "out-hash", "", "sign later: reserve zeroed signatures and write the SHA-256 digest the payload signatures sign (32 raw bytes) here")
	fs.StringVar(&g.outMetaHash, "out-metadata-hash", "", "with --out-hash, --major 2: write the digest the metadata signatures sign here")
	fs.StringVar(&g.sigSizes, "signature-size", "256", "with --out-hash: the size in bytes of each signature to reserve, colon-separated, oldest key first (256 = RSA-2048, 512 = RSA-4096)")
}

func cmdGenerate(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	var g generateFlags
	g.register(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if g.newImg == "" || g.out == "" || len(pos) > 0 {
		return fmt.Errorf("%w: need --new and -o", errUsage)
	}
	sizes, err := generateSigning(len(g.keys) > 0, g.unsigned, g.outHash, g.outMetaHash, g.major, g.sigSizes, fs)
	if err != nil {
		return err
	}
	if g.xzCmd == "builtin" {
		g.xzCmd = ""
	}
	if g.zstdCmd == "builtin" {
		g.zstdCmd = ""
	}
	o := payload.GenerateOptions{Compression: g.comp, Major: g.major, Partition: g.part, Version: g.version,
		XZCommand: g.xzCmd, ZstdCommand: g.zstdCmd, ChunkSize: g.chunkSize, TempDir: filepath.Dir(g.out), SignatureSizes: sizes}
	if o.Keys, err = loadPrivateKeys(g.keys); err != nil {
		return err
	}
	closeInputs, err := g.openInputs(&o)
	defer closeInputs()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(g.out), ".payload-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	res, h256, h1, err := generateTo(ctx, tmp, o, stderr)
	if err != nil {
		return err
	}
	if err := g.writeDigests(res.Digests); err != nil {
		return err
	}
	md := Metadata{File: filepath.Base(g.out), Version: g.version, SourceVersion: g.srcVersion, Delta: res.Delta,
		Size: res.Size, SHA256: base64.StdEncoding.EncodeToString(h256), SHA1: base64.StdEncoding.EncodeToString(h1),
		AppID: g.appid, Track: g.track}
	if err := publish(tmp, g.out, &md); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d bytes, sha256 %s, ops %s\n", g.out, res.Size, md.SHA256, countsString(res.OpCounts))
	if res.NoFileMap != nil {
		fmt.Fprintf(stderr, "payload_generator: note: sources by content alone (%v): the delta is correct, only larger\n", res.NoFileMap)
	}
	if g.outHash != "" {
		fmt.Fprintf(stdout, "%s: NOT SIGNED YET: %d signature(s) reserved; sign %s", g.out, len(sizes), g.outHash)
		if g.outMetaHash != "" {
			fmt.Fprintf(stdout, " and %s", g.outMetaHash)
		}
		fmt.Fprintf(stdout, " and run payload_generator sign\n")
	}
	return nil
}

// loadPrivateKeys reads every key of every file, in order.
func loadPrivateKeys(files []string) ([]*rsa.PrivateKey, error) {
	var keys []*rsa.PrivateKey
	for _, k := range files {
		b, err := os.ReadFile(k)
		if err != nil {
			return nil, err
		}
		ks, err := payload.ParsePrivateKeys(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		keys = append(keys, ks...)
	}
	return keys, nil
}

// openInputs opens the new image, the install procedures' files and the
// old image into o. The returned function closes what was opened, also
// after an error.
func (g *generateFlags) openInputs(o *payload.GenerateOptions) (func(), error) {
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	open := func(path string) (*os.File, int64, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, 0, err
		}
		files = append(files, f)
		size, err := sizeOf(f)
		return f, size, err
	}
	nf, size, err := open(g.newImg)
	if err != nil {
		return closeAll, err
	}
	o.New, o.NewSize = nf, size
	for _, pf := range []struct {
		path string
		typ  metadata.InstallProcedure_Type
	}{{g.kernel, metadata.InstallProcedure_KERNEL}, {g.pcrPolicy, metadata.InstallProcedure_PCR_POLICY}} {
		if pf.path == "" {
			continue
		}
		f, size, err := open(pf.path)
		if err != nil {
			return closeAll, err
		}
		o.Procedures = append(o.Procedures, payload.ProcedureFile{Type: pf.typ, Data: f, Size: size})
	}
	if g.oldImg != "" {
		of, size, err := open(g.oldImg)
		if err != nil {
			return closeAll, err
		}
		o.Old, o.OldSize = of, size
	}
	return closeAll, nil
}

// generateTo writes the payload of o to tmp, with a progress line on
// stderr when it is a terminal, and returns its SHA-256 and SHA-1.
func generateTo(ctx context.Context, tmp io.Writer, o payload.GenerateOptions, stderr io.Writer) (*payload.GenerateResult, []byte, []byte, error) {
	var prog *progress
	if isTerminal(stderr) {
		total := o.NewSize
		for _, pf := range o.Procedures {
			total += pf.Size
		}
		prog = newProgress(stderr, total, time.Now)
		o.Progress = prog.add
	}
	h256, h1 := sha256.New(), sha1.New()
	res, err := payload.Generate(ctx, io.MultiWriter(tmp, h256, h1), o)
	if prog != nil {
		prog.finish()
	}
	if err != nil {
		return nil, nil, nil, err
	}
	return res, h256.Sum(nil), h1.Sum(nil), nil
}

// writeDigests writes the digests to sign (--out-hash,
// --out-metadata-hash) before the payload is published: a payload with
// placeholders is useless without them.
func (g *generateFlags) writeDigests(d *payload.Digests) error {
	if g.outHash == "" {
		return nil
	}
	if err := atomicfile.WriteFile(g.outHash, d.Payload, 0o644); err != nil {
		return err
	}
	if g.outMetaHash != "" {
		return atomicfile.WriteFile(g.outMetaHash, d.Metadata, 0o644)
	}
	return nil
}

// publish makes the payload written to tmp public as out: mode 0644
// (served to every client; not CreateTemp's 0600), synced, renamed over
// out; then md, if set, is written as out.json.
func publish(tmp *os.File, out string, md *Metadata) error {
	if err := atomicfile.Commit(tmp, out, 0o644); err != nil {
		return err
	}
	if md == nil {
		return nil
	}
	jb, _ := json.MarshalIndent(md, "", "  ")
	return atomicfile.WriteFile(out+".json", append(jb, '\n'), 0o644)
}

func countsString(m map[string]int) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var s []string
	for _, k := range ks {
		s = append(s, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(s, " ")
}

// sizeOf returns the size of a regular file or block device.
func sizeOf(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Mode().IsRegular() {
		return st.Size(), nil
	}
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	_, err = f.Seek(0, io.SeekStart)
	return n, err
}

func loadPublicKeys(files []string) ([]*rsa.PublicKey, error) {
	var keys []*rsa.PublicKey
	for _, k := range files {
		b, err := os.ReadFile(k)
		if err != nil {
			return nil, err
		}
		ks, err := payload.ParsePublicKeys(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		keys = append(keys, ks...)
	}
	return keys, nil
}

func cmdShow(_ context.Context, args []string, _ io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("show", flag.ContinueOnError)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: need one PAYLOAD", errUsage)
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := payload.ReadMetadata(f)
	if err != nil {
		return err
	}
	size, _ := sizeOf(f)
	w := stdout
	fmt.Fprintf(w, "file:               %s (%d bytes)\n", pos[0], size)
	fmt.Fprintf(w, "major version:      %d\n", m.Major)
	fmt.Fprintf(w, "manifest size:      %d\n", m.ManifestSize)
	fmt.Fprintf(w, "metadata signature: %d bytes%s\n", m.MetadataSignatureSize, sigCount(m.MetadataSignature()))
	fmt.Fprintf(w, "block size:         %d\n", m.BlockSize)
	if m.Major == 2 {
		fmt.Fprintf(w, "minor version:      %d (%s)\n", m.MinorVersion, map[bool]string{true: "full", false: "delta"}[m.MinorVersion == 0])
	}
	var dataSize uint64
	for i, p := range m.Partitions {
		counts := map[string]int{}
		for _, op := range p.Ops {
			counts[op.GetType().String()]++
			dataSize += op.GetDataLength()
		}
		if m.Major == 1 && i > 0 {
			// Flatcar's install procedures (manifest field 10).
			fmt.Fprintf(w, "procedure %s: %d ops (%s)\n", procedureType(m.Flatcar.Procedures[i-1]), len(p.Ops), countsString(counts))
		} else {
			fmt.Fprintf(w, "partition %q: %d ops (%s)\n", p.Name, len(p.Ops), countsString(counts))
		}
		if p.Version != "" {
			fmt.Fprintf(w, "  version: %s\n", p.Version)
		}
		if p.NewInfo != nil {
			fmt.Fprintf(w, "  new: size %d sha256 %s\n", p.NewInfo.GetSize(), hex.EncodeToString(p.NewInfo.GetHash()))
		}
		if p.OldInfo != nil {
			fmt.Fprintf(w, "  old: size %d sha256 %s\n", p.OldInfo.GetSize(), hex.EncodeToString(p.OldInfo.GetHash()))
		}
	}
	fmt.Fprintf(w, "data:               %d bytes\n", dataSize)
	if m.SignaturesSize == 0 {
		fmt.Fprintf(w, "payload signature:  none\n")
		return nil
	}
	blob := make([]byte, m.SignaturesSize)
	if _, err := f.ReadAt(blob, int64(m.DataStart()+m.SignaturesOffset)); err != nil {
		return fmt.Errorf("read signature blob: %w", err)
	}
	fmt.Fprintf(w, "payload signature:  %d bytes at data offset %d%s\n", m.SignaturesSize, m.SignaturesOffset, sigCount(blob))
	return nil
}

// procedureType is KERNEL, PCR_POLICY, or "untyped" (skipped by clients).
func procedureType(pr *metadata.InstallProcedure) string {
	if pr.Type == nil {
		return "untyped"
	}
	return pr.GetType().String()
}

func sigCount(blob []byte) string {
	if len(blob) == 0 {
		return ""
	}
	n, err := payload.CountSignatures(blob)
	if err != nil {
		return " (unparseable)"
	}
	return fmt.Sprintf(" (%d signature(s))", n)
}

// discard is a target that drops writes: verify streams the whole payload
// through the applier without writing anything.
type discard struct{}

func (discard) WriteAt(b []byte, _ int64) (int, error) { return len(b), nil }

// openSource opens the source (old) partition of a delta into o.Source
// ("" = none) and returns the func that closes it.
func openSource(o *payload.Options, path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	o.Source = f
	return func() { f.Close() }, nil
}

func openPayload(name string, stdin io.Reader) (io.Reader, func(), error) {
	if name == "-" {
		return stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

func cmdVerify(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	var keys multiFlag
	fs.Var(&keys, "key", "public key PEM (repeatable)")
	target := fs.String("target", "", "also check that this device/file holds the new partition")
	source := fs.String("source", "", "delta payloads: the source (old) image or slot the delta applies to")
	scratch := fs.String("scratch", "", "with --source: directory for the new image, written to a temporary file so that its hash can be checked, then removed (default $TMPDIR)")
	part := fs.String("partition", "", "payload partition (default root or the only one)")
	version := fs.String("version", "", "require the payload to carry this version")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: need one PAYLOAD", errUsage)
	}
	pk, err := loadPublicKeys(keys)
	if err != nil {
		return err
	}
	o := payload.Options{Keys: pk, Partition: *part, Version: *version, RequireVersion: *version != "",
		MemoryLimit: setMemoryLimit}
	closeSource, err := openSource(&o, *source)
	if err != nil {
		return err
	}
	defer closeSource()
	r, closer, err := openPayload(pos[0], stdin)
	if err != nil {
		return err
	}
	defer closer()
	// A full payload writes in order and its new partition hash is taken
	// as it streams; a delta writes where its operations say, so the new
	// image is built in a temporary file and hashed back from there.
	var dst io.WriterAt = discard{}
	if *source != "" {
		tmp, err := os.CreateTemp(*scratch, "payload-verify-*.img")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		dst = tmp
	}
	res, err := payload.Apply(ctx, r, dst, o)
	if errors.Is(err, payload.ErrNoSource) && *source == "" {
		return fmt.Errorf("%w (a delta payload: give the image it applies to with --source)", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "payload OK: %d bytes, sha256 %s, %d ops, version %q, signature %s\n", res.Size,
		base64.StdEncoding.EncodeToString(res.SHA256), res.Ops, res.Version, map[bool]string{true: "verified", false: "NOT CHECKED (no key)"}[len(pk) > 0])
	if *target != "" {
		if res.PartitionHash == nil {
			return errors.New("payload has no new partition hash to compare with")
		}
		f, err := os.Open(*target)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, int64(res.PartitionSize))); err != nil {
			return err
		}
		if string(h.Sum(nil)) != string(res.PartitionHash) {
			return fmt.Errorf("%s: %w", *target, payload.ErrNewPartitionHash)
		}
		fmt.Fprintf(stdout, "target OK: %s holds partition %q (%d bytes)\n", *target, res.Partition, res.PartitionSize)
	}
	return nil
}

// setMemoryLimit makes the apply's limit (payload.Options.MemoryLimit) the
// process's: it does nothing else. A fixed 64 MiB limit let a delta's
// freed buffers stay up to it (66 MiB peak RSS on BenchmarkDelta's pair;
// 46 with the run's own limit); a limit below the run's live heap makes
// the collector run without pause (40 MiB: 26 and 57 collections a run
// for 24 MiB xz and zstd operations instead of 1 and 16).
func setMemoryLimit(n int64) { debug.SetMemoryLimit(n) }

func cmdApply(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	var keys multiFlag
	fs.Var(&keys, "key", "public key PEM (repeatable)")
	target := fs.String("target", "", "target file or block device")
	source := fs.String("source", "", "source (old) partition for delta payloads")
	part := fs.String("partition", "", "payload partition (default root or the only one)")
	direct := fs.Bool("direct", false, "open the target O_DIRECT (always for block devices)")
	strict := fs.Bool("strict", false, "refuse project extensions (REPLACE_ZSTD)")
	version := fs.String("version", "", "require the payload to carry this version")
	skipSig := fs.Bool("insecure-skip-signature", false, "apply without --key: the payload's signature is NOT checked")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *target == "" {
		return fmt.Errorf("%w: need PAYLOAD and --target", errUsage)
	}
	if len(keys) == 0 && !*skipSig {
		return fmt.Errorf("%w: %w", errUsage, errNoVerifyKey)
	}
	pk, err := loadPublicKeys(keys)
	if err != nil {
		return err
	}
	o := payload.Options{Keys: pk, Partition: *part, Strict: *strict, Version: *version, RequireVersion: *version != "",
		MemoryLimit: setMemoryLimit}
	t, err := openTarget(*target, *direct)
	if err != nil {
		return err
	}
	defer t.f.Close()
	o.Direct, o.TargetSize = t.direct, t.size
	closeSource, err := openSource(&o, *source)
	if err != nil {
		return err
	}
	defer closeSource()
	r, closer, err := openPayload(pos[0], stdin)
	if err != nil {
		return err
	}
	defer closer()
	res, err := payload.Apply(ctx, r, t.f, o)
	if err != nil {
		return err
	}
	if err := t.f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "applied: %d bytes, sha256 %s, %d ops, partition %q, version %q", res.Size,
		base64.StdEncoding.EncodeToString(res.SHA256), res.Ops, res.Partition, res.Version)
	if len(pk) == 0 {
		fmt.Fprint(stdout, ", signature NOT CHECKED")
	}
	if res.PartitionHash != nil {
		fmt.Fprintf(stdout, " verified (%d bytes)", res.PartitionSize)
	}
	fmt.Fprintln(stdout)
	return nil
}

func cmdKeygen(_ context.Context, args []string, _ io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	priv := fs.String("private", "", "private key PEM to write")
	pub := fs.String("public", "", "public key PEM to write")
	bits := fs.Int("bits", 2048, "RSA key size")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *priv == "" || *pub == "" || len(pos) > 0 {
		return fmt.Errorf("%w: need --private and --public", errUsage)
	}
	k, err := rsa.GenerateKey(rand.Reader, *bits)
	if err != nil {
		return err
	}
	pb, err := payload.MarshalPublicKey(&k.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*priv, payload.MarshalPrivateKey(k), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(*pub, pb, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s (RSA %d)\n", *priv, *pub, *bits)
	return nil
}

// defaultCommand is program when it is in PATH: liblzma's and libzstd's
// encoders make smaller payloads than the built-in ones (README "Payload
// size"); else "" (the built-in encoder).
func defaultCommand(program string) string {
	if _, err := exec.LookPath(program); err == nil {
		return program
	}
	return ""
}
