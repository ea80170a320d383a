package daemon

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/abupdate/update_engine/internal/prefs"
	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/payload"
	"github.com/abupdate/update_engine/pkg/payload/metadata"
)

// Kernels of the Flatcar host tests: both slots' current kernels and the
// one the update carries (three fit the 2 MiB test ESP).
var (
	kernelA   = image(300<<10+11, 41)
	kernelB   = image(300<<10+13, 42)
	newKernel = image(300<<10+17, 43)
	newPolicy = image(2000, 44)
)

// flatcarHost is a Flatcar machine on a loop disk: slot A holds oldImage,
// and the ESP (partition 1, FAT) is mounted at a temporary boot directory
// holding flatcar/vmlinuz-a and -b, as on a Flatcar host's /boot. Its
// post-install program records its arguments.
type flatcarHost struct {
	*host
	dev, boot, pcrDir, argv string
	o                       Options
}

func newFlatcarHost(t *testing.T, w *omahaWorld) *flatcarHost {
	t.Helper()
	_, dev := testenv.NewDiskLoop(t, testenv.DiskSpec{SlotSize: slotSize})
	boot, _ := testenv.MountVFAT(t, dev+"p1")
	if err := os.Mkdir(filepath.Join(boot, "flatcar"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string][]byte{"vmlinuz-a": kernelA, "vmlinuz-b": kernelB} {
		if err := os.WriteFile(filepath.Join(boot, "flatcar", name), k, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeSlotA(t, dev, oldImage)
	f := &flatcarHost{host: newHost(t, dev), dev: dev, boot: boot, pcrDir: t.TempDir()}
	f.argv = filepath.Join(t.TempDir(), "argv")
	prog := filepath.Join(t.TempDir(), "postinst")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho \"$@\" > "+f.argv+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.o = f.options(w.url())
	f.o.BootDir, f.o.PCRPolicyDir, f.o.Postinst = boot, f.pcrDir, prog
	return f
}

func (f *flatcarHost) file(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// noPartials fails if a temporary file was left beside the kernels.
func (f *flatcarHost) noPartials(t *testing.T) {
	t.Helper()
	for _, dir := range []string{filepath.Join(f.boot, "flatcar"), f.pcrDir} {
		if left, _ := filepath.Glob(filepath.Join(dir, ".*partial")); len(left) > 0 {
			t.Fatalf("left behind: %v", left)
		}
	}
}

// procedures are the kernel and PCR policy a payload carries.
func procedures(kernel, policy []byte) []payload.ProcedureFile {
	p := []payload.ProcedureFile{{Type: metadata.InstallProcedure_KERNEL, Data: bytes.NewReader(kernel), Size: int64(len(kernel))}}
	if policy != nil {
		p = append(p, payload.ProcedureFile{Type: metadata.InstallProcedure_PCR_POLICY, Data: bytes.NewReader(policy), Size: int64(len(policy))})
	}
	return p
}

// TestFlatcarKernel (root): a Flatcar v1 payload with a kernel and a PCR
// policy, applied by the daemon on a loop disk whose FAT ESP is mounted
// at the boot directory, installs flatcar/vmlinuz-b byte-identical to the
// kernel it carries (vmlinuz-a untouched, nothing left beside them),
// pcrs-b.zip in the policy directory, POSTs the policy to
// PCR_POLICY_SERVER, runs post-install as `postinst <dev> KERNEL=<path>
// PCR_POLICY=<path>`, flips to B, and keeps the update check's response
// as the full-response pref.
func TestFlatcarKernel(t *testing.T) {
	w := newOmaha(t)
	w.major, w.procedures = 1, procedures(newKernel, newPolicy)
	newImg := image(4<<20, 45)
	w.publish("v2.bin", "2.0.0", newImg, false)
	f := newFlatcarHost(t, w)
	pol := testenv.NewPostRecorder(t, http.StatusOK)
	f.o.Overrides["PCR_POLICY_SERVER"] = pol.URL + "/v1/policy"
	runDaemon(t, f.o)
	c := client(t, f.bus)
	installs(t, c, f.dev, newImg)

	if got := f.file(t, filepath.Join(f.boot, "flatcar", "vmlinuz-b")); !bytes.Equal(got, newKernel) {
		t.Fatalf("vmlinuz-b (%d bytes) is not the payload's kernel (%d bytes)", len(got), len(newKernel))
	}
	if !bytes.Equal(f.file(t, filepath.Join(f.boot, "flatcar", "vmlinuz-a")), kernelA) {
		t.Fatal("vmlinuz-a (the booted slot's kernel) changed")
	}
	if !bytes.Equal(f.file(t, filepath.Join(f.pcrDir, "pcrs-b.zip")), newPolicy) {
		t.Fatal("pcrs-b.zip is not the payload's policy")
	}
	f.noPartials(t)
	if got := pol.Requests(); len(got) != 1 || !bytes.Equal(got[0].Body, newPolicy) {
		t.Fatalf("policy server received %d POSTs", len(got))
	}
	want := fmt.Sprintf("%sp4 KERNEL=%s PCR_POLICY=%s\n", f.dev, filepath.Join(f.boot, "flatcar", "vmlinuz-b"), filepath.Join(f.pcrDir, "pcrs-b.zip"))
	if got := string(f.file(t, f.argv)); got != want {
		t.Fatalf("post-install argv %q, want %q", got, want)
	}
	resp := string(f.file(t, filepath.Join(f.prefs, prefs.KeyFullResponse)))
	if !strings.HasPrefix(resp, "<?xml") || !strings.Contains(resp, `version="2.0.0"`) || !strings.Contains(resp, `name="v2.bin"`) {
		t.Fatalf("full-response pref %q", resp)
	}
}

// TestFlatcarKernelMismatch (root): a correctly signed payload whose
// kernel does not match its new_info fails with code 16: vmlinuz-b is
// the old kernel, nothing is left beside it, and slot B does not boot.
func TestFlatcarKernelMismatch(t *testing.T) {
	w := newOmaha(t)
	w.major = 1
	img := image(1<<20, 46)
	bad := info(newKernel)
	bad.Hash[0] ^= 1
	spec := &payload.Spec{Major: 1, Version: "2.0.0", NewInfo: info(img),
		Ops: []*metadata.InstallOperation{replaceOp(0, img)},
		Procedures: []*metadata.InstallProcedure{{Type: metadata.InstallProcedure_KERNEL.Enum(), NewInfo: bad,
			Operations: []*metadata.InstallOperation{replaceOp(uint64(len(img)), newKernel)}}},
	}
	var buf bytes.Buffer
	if _, err := payload.WritePayload(&buf, spec, io.MultiReader(bytes.NewReader(img), bytes.NewReader(newKernel)), []*rsa.PrivateKey{testKey(t)}); err != nil {
		t.Fatal(err)
	}
	w.publishData("v2.bin", "2.0.0", "", false, buf.Bytes(), false)
	f := newFlatcarHost(t, w)
	runDaemon(t, f.o)
	f.fails(t, w, omaha.NewKernelVerificationError)
	if !bytes.Equal(f.file(t, filepath.Join(f.boot, "flatcar", "vmlinuz-b")), kernelB) {
		t.Fatal("vmlinuz-b changed")
	}
	f.noPartials(t)
}

// TestFlatcarPCRPolicyServerError (root): the policy server refuses the
// policy: code 43, no post-install, slot B does not boot.
func TestFlatcarPCRPolicyServerError(t *testing.T) {
	w := newOmaha(t)
	w.major, w.procedures = 1, procedures(newKernel, newPolicy)
	w.publish("v2.bin", "2.0.0", image(1<<20, 47), false)
	f := newFlatcarHost(t, w)
	pol := testenv.NewPostRecorder(t, http.StatusInternalServerError)
	f.o.Overrides["PCR_POLICY_SERVER"] = pol.URL
	runDaemon(t, f.o)
	f.fails(t, w, omaha.NewPCRPolicyHTTPError)
	if got := pol.Requests(); len(got) != 1 || !bytes.Equal(got[0].Body, newPolicy) {
		t.Fatalf("policy server received %d POSTs", len(got))
	}
}

// fails asks for an update that must fail with code before post-install:
// slot A boots next and slot B cannot boot.
func (f *flatcarHost) fails(t *testing.T, w *omahaWorld, code omaha.Code) {
	t.Helper()
	d := failedAttempt(t, w, client(t, f.bus))
	if want := int32(code | omaha.FlagTestOmahaURL); d.LastError != want {
		t.Fatalf("last error %d (%s), want %d", d.LastError, d.LastErrorMessage, want)
	}
	notBootable(t, f.dev)
	if _, err := os.Stat(f.argv); err == nil {
		t.Fatal("post-install ran")
	}
}

// TestFlatcarKernelResume (root): the download breaks off inside the
// kernel's data; the next attempt resumes with a Range request from the
// kernel's first byte (the checkpoint before the files) and installs the
// kernel byte-identical.
func TestFlatcarKernelResume(t *testing.T) {
	w := newOmaha(t)
	w.major, w.procedures = 1, procedures(newKernel, nil)
	newImg := image(4<<20, 48)
	p := w.publish("v2.bin", "2.0.0", newImg, false)
	m, err := payload.ReadMetadata(bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	kernelStart := int64(m.DataStart() + m.Partitions[1].Ops[0].GetDataOffset())
	var kernelData int64
	for _, op := range m.Partitions[1].Ops {
		kernelData += int64(op.GetDataLength())
	}
	w.mu.Lock()
	w.cut = kernelStart + kernelData/2
	w.mu.Unlock()
	f := newFlatcarHost(t, w)
	runDaemon(t, f.o)
	f.fails(t, w, omaha.DownloadTransferError)
	if !bytes.Equal(f.file(t, filepath.Join(f.boot, "flatcar", "vmlinuz-b")), kernelB) {
		t.Fatal("vmlinuz-b changed by the broken download")
	}
	installs(t, client(t, f.bus), f.dev, newImg)
	if r := w.rangeHeaders(); len(r) != 2 || r[1] != fmt.Sprintf("bytes=%d-", kernelStart) {
		t.Fatalf("range headers %q, want a resume from the kernel's first byte %d", r, kernelStart)
	}
	if !bytes.Equal(f.file(t, filepath.Join(f.boot, "flatcar", "vmlinuz-b")), newKernel) {
		t.Fatal("vmlinuz-b is not the payload's kernel after the resume")
	}
	f.noPartials(t)
}

// notBootable fails unless slot A boots next and slot B cannot boot.
func notBootable(t *testing.T, disk string) {
	t.Helper()
	slots, _, err := slot.List(disk)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if s.Name == "B" && s.Priority > 0 && (s.Tries > 0 || s.Successful) {
			t.Fatalf("slot B is bootable: %+v", s)
		}
	}
	if nb := nextBoot(t, disk); nb != "A" {
		t.Fatalf("next boot %s", nb)
	}
}

func info(b []byte) *metadata.PartitionInfo {
	s := sha256.Sum256(b)
	return &metadata.PartitionInfo{Size: proto.Uint64(uint64(len(b))), Hash: s[:]}
}

// replaceOp is a REPLACE of data at blob offset off onto the first blocks.
func replaceOp(off uint64, data []byte) *metadata.InstallOperation {
	s := sha256.Sum256(data)
	return &metadata.InstallOperation{Type: payload.OpReplace.Enum(), DataOffset: proto.Uint64(off), DataLength: proto.Uint64(uint64(len(data))),
		DataSha256Hash: s[:], DstExtents: []*metadata.Extent{{StartBlock: proto.Uint64(0), NumBlocks: proto.Uint64((uint64(len(data)) + 4095) / 4096)}}}
}
