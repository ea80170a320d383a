package engine

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/abupdate/update_engine/internal/crashpoint"
	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/pkg/atomicfile"
	"github.com/abupdate/update_engine/pkg/omaha"
)

// Procedures places the files a Flatcar (major 1) payload carries beside
// the USR partition, its install procedures, as FUE does
// (omaha_response_handler_action.cc, kernel_verifier_action.cc,
// pcr_policy_post_action.cc), for the target slot's letter (a for slot A,
// partition 3; b for slot B, partition 4):
//
//	kernel      <BootDir>/flatcar/vmlinuz-<l>, or <BootDir>/coreos/vmlinuz-<l>
//	            when a coreos/vmlinuz-a or -b exists
//	pcr_policy  <PolicyDir>/pcrs-<l>.zip
//
// Unlike FUE, which writes those files in place, each is written to a
// temporary file beside it (.<name>.partial) and renamed into place,
// then the directory synced, only once the whole payload verified
// (signature, Omaha size and SHA-256, partition, the file's new_info):
// a payload that fails leaves the old files as they were. Before the
// post-install step (which gets KERNEL=<path> and PCR_POLICY=<path> after
// the device), the installed files are checked again (codes 16 and 42)
// and the policy is POSTed to PolicyServer when one is set (code 43).
type Procedures struct {
	BootDir   string // "" = /boot (the ESP's mount point)
	PolicyDir string // "" = /var/lib/update_engine
	// PolicyServer returns PCR_POLICY_SERVER, read before each POST;
	// nil or "" = no POST.
	PolicyServer func() string
	HTTP         *http.Client  // nil = http.DefaultClient
	Timeout      time.Duration // of the POST; 0 = 2 min
}

// InstalledFile is a payload file renamed into place (in the record).
type InstalledFile struct {
	Name   string `json:"name"` // "kernel", "pcr_policy"
	Path   string `json:"path"`
	Size   uint64 `json:"size"`
	SHA256 []byte `json:"sha256"`
}

// The payload's names for the files (pkg/payload FileKernel,
// FilePCRPolicy).
const (
	fileKernel    = "kernel"
	filePCRPolicy = "pcr_policy"
)

// fileSet is one attempt's files: opened as temporary files while the
// payload streams, renamed into place by install, or removed.
type fileSet struct {
	proc   Procedures
	letter string // "a" or "b"; "" when the target slot has no letter
	open   []*openFile
}

type openFile struct {
	name, tmp, final string
	f                *os.File
}

func newFileSet(p Procedures, targetSlot string) *fileSet {
	l := strings.ToLower(targetSlot)
	if l != "a" && l != "b" {
		l = ""
	}
	return &fileSet{proc: p, letter: l}
}

// path is where the file of that payload name goes ("" for a name this
// engine does not install).
func (s *fileSet) path(name string) (string, error) {
	var dir, base string
	switch name {
	case fileKernel:
		boot := cmp.Or(s.proc.BootDir, "/boot")
		dir = filepath.Join(boot, "flatcar")
		for _, l := range []string{"a", "b"} {
			if _, err := os.Stat(filepath.Join(boot, "coreos", "vmlinuz-"+l)); err == nil {
				dir = filepath.Join(boot, "coreos")
			}
		}
		base = "vmlinuz-" + s.letter
	case filePCRPolicy:
		dir = cmp.Or(s.proc.PolicyDir, "/var/lib/update_engine")
		base = "pcrs-" + s.letter + ".zip"
	default:
		return "", nil // untyped procedures: verified and dropped, as in FUE
	}
	if s.letter == "" {
		return "", fmt.Errorf("engine: the target slot has no letter (a or b) to name %s after", base)
	}
	return filepath.Join(dir, base), nil
}

// codeOpen is the code of a file that cannot be written: 8
// (KernelDeviceOpenError) for the kernel, 14 (DownloadWriteError) else.
func codeOpen(name string) omaha.Code {
	if name == fileKernel {
		return omaha.KernelDeviceOpenError
	}
	return omaha.DownloadWriteError
}

// codeVerify is the code of a file that does not verify.
func codeVerify(name string) omaha.Code {
	if name == fileKernel {
		return omaha.NewKernelVerificationError
	}
	return omaha.NewPCRPolicyVerificationError
}

// Open implements Files: an empty temporary file beside the final path.
// The kernel's directory must exist (a /boot without flatcar/ is an ESP
// that is not mounted: writing there would not reach the firmware).
func (s *fileSet) Open(name string) (FileTarget, error) {
	final, err := s.path(name)
	if err != nil {
		return nil, status.WithCode(codeOpen(name), err)
	}
	if final == "" {
		return nil, nil
	}
	dir := filepath.Dir(final)
	if name != fileKernel {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, status.WithCode(codeOpen(name), err)
		}
	}
	tmp := filepath.Join(dir, "."+filepath.Base(final)+".partial")
	crashpoint.Hit("file " + filepath.Base(tmp))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, status.WithCode(codeOpen(name), fmt.Errorf("engine: the payload's %s: %w", name, err))
	}
	s.open = append(s.open, &openFile{name: name, tmp: tmp, final: final, f: f})
	return f, nil
}

// close closes the files; discard also removes them.
func (s *fileSet) close(discard bool) {
	for _, o := range s.open {
		if o.f != nil {
			o.f.Close()
			o.f = nil
		}
		if discard {
			os.Remove(o.tmp)
		}
	}
	if discard {
		s.open = nil
	}
}

// install renames each verified file into place and syncs its directory.
// Called once the whole payload verified; applied must name every file
// opened (an applier that opened a file and did not verify it fails).
func (s *fileSet) install(applied []AppliedFile) ([]InstalledFile, error) {
	s.close(false)
	var out []InstalledFile
	for _, o := range s.open {
		var af *AppliedFile
		for i := range applied {
			if applied[i].Name == o.name {
				af = &applied[i]
			}
		}
		if af == nil {
			return nil, status.WithCode(codeVerify(o.name), fmt.Errorf("engine: the payload's %s was written but not verified", o.name))
		}
		crashpoint.Hit("file " + filepath.Base(o.final))
		if err := atomicfile.Rename(o.tmp, o.final); err != nil {
			return nil, status.WithCode(omaha.DownloadWriteError, fmt.Errorf("engine: install %s: %w", o.final, err))
		}
		out = append(out, InstalledFile{Name: o.name, Path: o.final, Size: af.Size, SHA256: af.SHA256})
	}
	s.open = nil
	return out, nil
}

// postinstArgs are the post-install program's arguments after the device:
// KERNEL=<path>, PCR_POLICY=<path>.
func postinstArgs(files []InstalledFile) []string {
	var args []string
	for _, f := range files {
		switch f.Name {
		case fileKernel:
			args = append(args, "KERNEL="+f.Path)
		case filePCRPolicy:
			args = append(args, "PCR_POLICY="+f.Path)
		}
	}
	return args
}

// checkFiles runs before post-install, as FUE's KernelVerifierAction and
// PCRPolicyPostAction: each installed file must still match (16, 42),
// and the PCR policy is POSTed to the policy server when one is set (43).
func (p Procedures) checkFiles(ctx context.Context, files []InstalledFile) error {
	for _, f := range files {
		data, err := readVerified(f)
		if err != nil {
			return status.WithCode(codeVerify(f.Name), err)
		}
		if f.Name == filePCRPolicy {
			if err := p.post(ctx, data); err != nil {
				return status.WithCode(omaha.NewPCRPolicyHTTPError, err)
			}
		}
	}
	return nil
}

// readVerified reads an installed file and checks its size and hash. The
// files are small (a kernel, a policy zip).
func readVerified(f InstalledFile) ([]byte, error) {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, fmt.Errorf("engine: installed %s: %w", f.Name, err)
	}
	if uint64(len(data)) != f.Size {
		return nil, fmt.Errorf("engine: installed %s %s is %d bytes, the payload says %d", f.Name, f.Path, len(data), f.Size)
	}
	if sum := sha256.Sum256(data); !bytes.Equal(sum[:], f.SHA256) {
		return nil, fmt.Errorf("engine: installed %s %s has SHA-256 %x, the payload says %x", f.Name, f.Path, sum, f.SHA256)
	}
	return data, nil
}

// ErrPCRPolicyPost: the PCR policy server did not take the policy.
var ErrPCRPolicyPost = errors.New("engine: PCR policy POST failed")

// post sends the policy zip to PCR_POLICY_SERVER (application/octet-stream,
// as FUE); any answer but 2xx fails.
func (p Procedures) post(ctx context.Context, zip []byte) error {
	var url string
	if p.PolicyServer != nil {
		url = p.PolicyServer()
	}
	if url == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(p.Timeout, 2*time.Minute))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(zip))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPCRPolicyPost, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	hc := p.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPCRPolicyPost, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: %s: %s: %s", ErrPCRPolicyPost, url, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}
