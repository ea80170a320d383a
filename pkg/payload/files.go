package payload

import (
	"errors"
	"fmt"

	"github.com/abupdate/update_engine/pkg/payload/metadata"
)

// File partitions: a major 1 payload carries, after the USR partition's
// operations, Flatcar's install procedures (manifest field 10): the
// kernel the new image boots with and its TPM PCR policy. Their
// operations write plain files, each of new_info.size bytes.

var (
	// ErrNewKernelHash: the kernel file written from a KERNEL procedure
	// does not match its new_info. Code 16 (NewKernelVerificationError).
	ErrNewKernelHash = errors.New("payload: new kernel hash mismatch")
	// ErrNewPCRPolicyHash: the PCR policy file written from a PCR_POLICY
	// procedure does not match its new_info. Code 42
	// (NewPCRPolicyVerificationError).
	ErrNewPCRPolicyHash = errors.New("payload: new PCR policy hash mismatch")
	// ErrNewFileHash: another file partition does not match its new_info.
	// Code 15 (NewRootfsVerificationError).
	ErrNewFileHash = errors.New("payload: new file hash mismatch")
)

// Names of the file partitions of Flatcar's install procedures.
const (
	FileKernel    = "kernel"
	FilePCRPolicy = "pcr_policy"
)

// procedureNames names Flatcar's typed install procedures.
var procedureNames = map[metadata.InstallProcedure_Type]string{
	metadata.InstallProcedure_KERNEL:     FileKernel,
	metadata.InstallProcedure_PCR_POLICY: FilePCRPolicy,
}

// fileHashErr is the sentinel for a file partition that does not verify.
func fileHashErr(name string) error {
	switch name {
	case FileKernel:
		return ErrNewKernelHash
	case FilePCRPolicy:
		return ErrNewPCRPolicyHash
	}
	return ErrNewFileHash
}

// fileOut is one file partition being written.
type fileOut struct {
	name string
	t    FileTarget
	info *metadata.PartitionInfo
}

// openFiles asks Options.Files for a place for each install procedure of
// a major 1 payload (not for the applied partition, nor for a major 2
// payload's other partitions, which are partition images: a ChromeOS
// "kernel" partition is no vmlinuz) and binds those it gets one for.
func (a *applier) openFiles() error {
	if a.o.Files == nil || a.p.m.Major != 1 {
		return nil
	}
	for pi, pt := range a.p.m.Partitions {
		if pi == a.p.part {
			continue
		}
		t, err := a.o.Files(pt.Name)
		if err != nil {
			return fmt.Errorf("payload: open file for partition %q: %w", pt.Name, err)
		}
		if t == nil {
			continue
		}
		for _, f := range a.files {
			if f.name == pt.Name {
				return fmt.Errorf("%w: two file partitions named %q", ErrInvalidManifest, pt.Name)
			}
		}
		if err := a.p.bindFile(pi, len(a.files)); err != nil {
			return err
		}
		a.files = append(a.files, fileOut{name: pt.Name, t: t, info: pt.NewInfo})
	}
	return nil
}

// finishFile cuts a file to its size, syncs it and checks it, read back,
// against new_info.
func (a *applier) finishFile(f fileOut) error {
	size := f.info.GetSize()
	if err := f.t.Truncate(int64(size)); err != nil {
		return fmt.Errorf("%w: truncate %s to %d: %v", ErrWrite, f.name, size, err)
	}
	if err := f.t.Sync(); err != nil {
		return fmt.Errorf("%w: sync %s: %v", ErrWrite, f.name, err)
	}
	got, err := a.hashBack(f.t, size)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", fileHashErr(f.name), f.name, err)
	}
	if string(got) != string(f.info.GetHash()) {
		return fmt.Errorf("%w: %s: %x, want %x", fileHashErr(f.name), f.name, got, f.info.GetHash())
	}
	return nil
}
