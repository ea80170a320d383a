package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/abupdate/update_engine/pkg/payload/metadata"
	"google.golang.org/protobuf/proto"
)

// fileSet hands out files in a directory, emptied, for Options.Files.
type fileSet struct {
	t     testing.TB
	dir   string
	names []string // asked for, in order
	skip  map[string]bool
}

func newFileSet(t testing.TB) *fileSet { return &fileSet{t: t, dir: t.TempDir()} }

func (s *fileSet) open(name string) (FileTarget, error) {
	s.names = append(s.names, name)
	if s.skip[name] {
		return nil, nil
	}
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	s.t.Cleanup(func() { f.Close() })
	return f, nil
}

func (s *fileSet) read(name string) []byte {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

// flatcarPayload is a signed major 1 payload of img with a kernel and a
// PCR policy procedure, in 64 KiB operations.
func flatcarPayload(t testing.TB, img, kernel, policy []byte) []byte {
	t.Helper()
	return generate(t, img, GenerateOptions{Major: 1, Keys: keys(t, 1), ChunkSize: 64 << 10, Procedures: []ProcedureFile{
		{Type: metadata.InstallProcedure_KERNEL, Data: bytes.NewReader(kernel), Size: int64(len(kernel))},
		{Type: metadata.InstallProcedure_PCR_POLICY, Data: bytes.NewReader(policy), Size: int64(len(policy))},
	}})
}

// TestFiles: a Flatcar payload's kernel and PCR policy land, byte for
// byte (cut to new_info.size, not to the block), in the files Options.Files
// gives; without Files, or when it declines one, that data is verified and
// dropped and the partition still applies.
func TestFiles(t *testing.T) {
	img, kernel, policy := testImage(512<<10, 21), testImage(200<<10+123, 22), testImage(3000, 23)
	p := flatcarPayload(t, img, kernel, policy)
	o := Options{Keys: pubs(keys(t, 1)[0])}

	fs := newFileSet(t)
	o.Files = fs.open
	f := targetFile(t, 0)
	res, err := Apply(context.Background(), bytes.NewReader(p), f, o)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, f, len(img)), img) {
		t.Fatal("partition differs")
	}
	if !bytes.Equal(fs.read(FileKernel), kernel) || !bytes.Equal(fs.read(FilePCRPolicy), policy) {
		t.Fatal("kernel or policy file differs")
	}
	ks, ps := sha256.Sum256(kernel), sha256.Sum256(policy)
	want := []FileResult{{FileKernel, uint64(len(kernel)), ks[:]}, {FilePCRPolicy, uint64(len(policy)), ps[:]}}
	if len(res.Files) != 2 || res.Files[0].Name != want[0].Name || res.Files[1].Name != want[1].Name ||
		res.Files[0].Size != want[0].Size || !bytes.Equal(res.Files[1].SHA256, want[1].SHA256) {
		t.Fatalf("Result.Files %+v, want %+v", res.Files, want)
	}

	t.Run("declined", func(t *testing.T) {
		fs := newFileSet(t)
		fs.skip = map[string]bool{FileKernel: true}
		o := o
		o.Files = fs.open
		res, err := Apply(context.Background(), bytes.NewReader(p), targetFile(t, 0), o)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Files) != 1 || res.Files[0].Name != FilePCRPolicy {
			t.Fatalf("Result.Files %+v", res.Files)
		}
		if _, err := os.Stat(filepath.Join(fs.dir, FileKernel)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("declined kernel written: %v", err)
		}
	})
	t.Run("no Files", func(t *testing.T) {
		o := o
		o.Files = nil
		res, err := Apply(context.Background(), bytes.NewReader(p), targetFile(t, 0), o)
		if err != nil || len(res.Files) != 0 {
			t.Fatalf("%+v, %v", res, err)
		}
	})
}

// TestFileHashMismatch: a correctly signed payload whose kernel (or PCR
// policy) does not match its new_info fails with the file's own error,
// after the file was written in full.
func TestFileHashMismatch(t *testing.T) {
	k := keys(t, 1)
	img := testImage(64<<10, 24)
	for _, tc := range []struct {
		name    string
		typ     metadata.InstallProcedure_Type
		wantErr error
	}{
		{"kernel", metadata.InstallProcedure_KERNEL, ErrNewKernelHash},
		{"pcr policy", metadata.InstallProcedure_PCR_POLICY, ErrNewPCRPolicyHash},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := testImage(10000, 25)
			bad := info(file)
			bad.Hash[0] ^= 1
			spec := &Spec{Major: 1, NewInfo: info(img),
				Ops: []*metadata.InstallOperation{{Type: OpReplace.Enum(), DstExtents: ext(0, 16)}},
				Procedures: []*metadata.InstallProcedure{{Type: tc.typ.Enum(), NewInfo: bad,
					Operations: []*metadata.InstallOperation{{Type: OpReplace.Enum(), DstExtents: ext(0, 3),
						DataOffset: proto.Uint64(uint64(len(img))), DataLength: proto.Uint64(uint64(len(file))), DataSha256Hash: sum256(file)}}}},
			}
			p := writeOps(t, spec, [][]byte{img, file}, k)
			fs := newFileSet(t)
			_, err := Apply(context.Background(), bytes.NewReader(p), targetFile(t, 0), Options{Keys: pubs(k[0]), Files: fs.open})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if errors.Is(err, ErrNewPartitionHash) {
				t.Fatalf("err %v also reads as a partition mismatch", err)
			}
		})
	}
}

func sum256(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// TestFileValidation: a file partition's extents stay inside its
// new_info size, a file without new_info is refused, and two KERNEL
// procedures are refused, all before the first write.
func TestFileValidation(t *testing.T) {
	img := testImage(16<<10, 26)
	file := testImage(4096, 27)
	proc := func(start uint64, ni *metadata.PartitionInfo) *metadata.InstallProcedure {
		return &metadata.InstallProcedure{Type: metadata.InstallProcedure_KERNEL.Enum(), NewInfo: ni,
			Operations: []*metadata.InstallOperation{{Type: OpReplace.Enum(), DstExtents: ext(start, 1),
				DataOffset: proto.Uint64(uint64(len(img))), DataLength: proto.Uint64(4096), DataSha256Hash: sum256(file)}}}
	}
	for _, tc := range []struct {
		name  string
		procs []*metadata.InstallProcedure
	}{
		{"extent past new_info", []*metadata.InstallProcedure{proc(1, info(file))}},
		{"no new_info", []*metadata.InstallProcedure{proc(0, nil)}},
		{"two kernels", []*metadata.InstallProcedure{proc(0, info(file)), {Type: metadata.InstallProcedure_KERNEL.Enum(), NewInfo: info(nil)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &Spec{Major: 1, NewInfo: info(img), Ops: []*metadata.InstallOperation{{Type: OpReplace.Enum(), DstExtents: ext(0, 4)}},
				Procedures: tc.procs}
			p := writeOps(t, spec, [][]byte{img, file}, nil)
			f := targetFile(t, 16<<10)
			_, err := Apply(context.Background(), bytes.NewReader(p), f, Options{Files: newFileSet(t).open})
			if !errors.Is(err, ErrInvalidManifest) {
				t.Fatalf("err %v, want ErrInvalidManifest", err)
			}
			if !bytes.Equal(readAll(t, f, 16<<10), bytes.Repeat([]byte{0xEE}, 16<<10)) {
				t.Fatal("target written before the manifest was refused")
			}
		})
	}
}

// TestFilesResume: checkpoints stop before the first file operation, so an
// apply interrupted anywhere resumes from at most there and writes the
// files from their start (into fresh files) byte-identical; a checkpoint
// past that point is refused.
func TestFilesResume(t *testing.T) {
	img, kernel, policy := testImage(256<<10, 31), testImage(300<<10, 32), testImage(5000, 33)
	p := flatcarPayload(t, img, kernel, policy)
	m, err := ReadMetadata(bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	partOps := len(m.Partitions[0].Ops)
	if len(m.Partitions) != 3 || len(m.Partitions[1].Ops) < 4 {
		t.Fatalf("payload has %d partitions, kernel ops %d", len(m.Partitions), len(m.Partitions[1].Ops))
	}
	pub := pubs(keys(t, 1)[0])
	var cps []*Checkpoint
	o := Options{Keys: pub, Files: newFileSet(t).open, Checkpoint: func(cp *Checkpoint) error { cps = append(cps, cp); return nil }}
	if _, err := Apply(context.Background(), bytes.NewReader(p), targetFile(t, 0), o); err != nil {
		t.Fatal(err)
	}
	if len(cps) != partOps {
		t.Fatalf("%d checkpoints, want one per partition op (%d)", len(cps), partOps)
	}
	last := cps[len(cps)-1]
	if last.NextOp != partOps {
		t.Fatalf("last checkpoint at op %d, want %d (the first kernel op)", last.NextOp, partOps)
	}

	// Interrupted in the middle of the kernel's data: the run fails, the
	// last checkpoint is the one before the kernel.
	kernelData := int64(m.DataStart()) + int64(m.Partitions[1].Ops[2].GetDataOffset())
	cps = nil
	f := targetFile(t, 0)
	fs1 := newFileSet(t)
	o1 := o
	o1.Files = fs1.open
	if _, err := Apply(context.Background(), bytes.NewReader(p[:kernelData+100]), f, o1); !errors.Is(err, ErrTruncated) {
		t.Fatalf("interrupted apply: %v", err)
	}
	cp := cps[len(cps)-1]
	if cp.NextOp != partOps {
		t.Fatalf("interrupted apply's last checkpoint at op %d, want %d", cp.NextOp, partOps)
	}
	fs2 := newFileSet(t)
	res, err := Resume(context.Background(), cp, bytes.NewReader(p[cp.Offset:]), f, Options{Keys: pub, Files: fs2.open})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, f, len(img)), img) || !bytes.Equal(fs2.read(FileKernel), kernel) || !bytes.Equal(fs2.read(FilePCRPolicy), policy) {
		t.Fatal("resumed apply: partition or files differ")
	}
	if len(res.Files) != 2 {
		t.Fatalf("resumed Result.Files %+v", res.Files)
	}

	t.Run("checkpoint inside the files", func(t *testing.T) {
		// A checkpoint taken without Files can be past the kernel's
		// first op; with Files it is refused rather than leaving the
		// kernel's first ops unwritten.
		var cps []*Checkpoint
		o := Options{Keys: pub, Checkpoint: func(cp *Checkpoint) error { cps = append(cps, cp); return nil }}
		if _, err := Apply(context.Background(), bytes.NewReader(p), targetFile(t, 0), o); err != nil {
			t.Fatal(err)
		}
		cp := cps[partOps+1]
		_, err := Resume(context.Background(), cp, bytes.NewReader(p[cp.Offset:]), targetFile(t, 0), Options{Keys: pub, Files: newFileSet(t).open})
		if !errors.Is(err, ErrBadCheckpoint) {
			t.Fatalf("err %v, want ErrBadCheckpoint", err)
		}
	})
}
