package engine

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/abupdate/update_engine/internal/parts"
	"github.com/abupdate/update_engine/internal/prefs"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/omaha"
)

func installed(t *testing.T, name, path string, data []byte) InstalledFile {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return InstalledFile{Name: name, Path: path, Size: uint64(len(data)), SHA256: sum[:]}
}

// TestCheckFiles: before post-install the installed kernel and policy must
// still match the payload (16, 42); the policy is POSTed to the policy
// server as application/octet-stream, and an error answer is code 43;
// without a server nothing is sent.
func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	kernel := installed(t, fileKernel, filepath.Join(dir, "vmlinuz-b"), []byte("new kernel"))
	policy := installed(t, filePCRPolicy, filepath.Join(dir, "pcrs-b.zip"), []byte("PK\x03\x04 policy"))
	tests := []struct {
		name     string
		code     int // server answer; 0 = no server
		files    []InstalledFile
		wantCode omaha.Code
		wantPOST bool
	}{
		{"posted", http.StatusOK, []InstalledFile{kernel, policy}, omaha.Success, true},
		{"server error", http.StatusInternalServerError, []InstalledFile{kernel, policy}, omaha.NewPCRPolicyHTTPError, true},
		{"no server", 0, []InstalledFile{kernel, policy}, omaha.Success, false},
		{"kernel changed", http.StatusOK, []InstalledFile{{Name: fileKernel, Path: kernel.Path, Size: kernel.Size, SHA256: policy.SHA256}, policy}, omaha.NewKernelVerificationError, false},
		{"policy size", http.StatusOK, []InstalledFile{kernel, {Name: filePCRPolicy, Path: policy.Path, Size: 3, SHA256: policy.SHA256}}, omaha.NewPCRPolicyVerificationError, false},
		{"kernel missing", http.StatusOK, []InstalledFile{{Name: fileKernel, Path: filepath.Join(dir, "none"), Size: 1}}, omaha.NewKernelVerificationError, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Procedures{}
			var srv *testenv.PostRecorder
			if tc.code != 0 {
				srv = testenv.NewPostRecorder(t, tc.code)
				p.PolicyServer = func() string { return srv.URL + "/policy" }
			}
			err := p.checkFiles(t.Context(), tc.files)
			if got := mapError(err); got != tc.wantCode {
				t.Fatalf("code %v (%v), want %v", got, err, tc.wantCode)
			}
			if tc.wantCode == omaha.NewPCRPolicyHTTPError && !errors.Is(err, ErrPCRPolicyPost) {
				t.Fatalf("err %v is not ErrPCRPolicyPost", err)
			}
			if srv == nil {
				return
			}
			got := srv.Requests()
			if !tc.wantPOST {
				if len(got) != 0 {
					t.Fatalf("%d POSTs for a file that does not verify", len(got))
				}
				return
			}
			want, _ := os.ReadFile(policy.Path)
			if len(got) != 1 || !bytes.Equal(got[0].Body, want) || got[0].Method != "POST" || got[0].ContentType != "application/octet-stream" {
				t.Fatalf("server got %+v, want one POST of %q", got, want)
			}
		})
	}
}

// TestFileSetPaths: files are named after the target slot's letter, in
// flatcar/ or (when a CoreOS kernel is there) coreos/; the temporary file
// sits beside the final one and is renamed into place only by install; a
// boot directory without flatcar/ is code 8; untyped procedures are
// dropped.
func TestFileSetPaths(t *testing.T) {
	boot, pol := t.TempDir(), filepath.Join(t.TempDir(), "state")
	p := Procedures{BootDir: boot, PolicyDir: pol}

	if _, err := newFileSet(p, "B").Open(fileKernel); mapError(err) != omaha.KernelDeviceOpenError {
		t.Fatalf("no flatcar/ in the boot dir: %v, want code 8", err)
	}
	if err := os.MkdirAll(filepath.Join(boot, "flatcar"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := []byte("old kernel b")
	if err := os.WriteFile(filepath.Join(boot, "flatcar", "vmlinuz-b"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	fs := newFileSet(p, "B")
	for _, nd := range [][2]string{{fileKernel, "new kernel"}, {filePCRPolicy, "policy"}} { // payload order
		f, err := fs.Open(nd[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte(nd[1]), 0); err != nil {
			t.Fatal(err)
		}
	}
	if f, err := fs.Open("procedure2"); f != nil || err != nil {
		t.Fatalf("untyped procedure: %v, %v", f, err)
	}
	if b, _ := os.ReadFile(filepath.Join(boot, "flatcar", "vmlinuz-b")); !bytes.Equal(b, old) {
		t.Fatal("vmlinuz-b changed before install")
	}
	got, err := fs.install([]AppliedFile{{Name: fileKernel, Size: 10}, {Name: filePCRPolicy, Size: 6}})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(boot, "flatcar", "vmlinuz-b")); string(b) != "new kernel" {
		t.Fatalf("vmlinuz-b %q after install", b)
	}
	if b, _ := os.ReadFile(filepath.Join(pol, "pcrs-b.zip")); string(b) != "policy" {
		t.Fatalf("pcrs-b.zip %q after install", b)
	}
	if args := postinstArgs(got); !slices.Equal(args, []string{"KERNEL=" + filepath.Join(boot, "flatcar", "vmlinuz-b"), "PCR_POLICY=" + filepath.Join(pol, "pcrs-b.zip")}) {
		t.Fatalf("postinst args %q", args)
	}
	if left, _ := filepath.Glob(filepath.Join(boot, "flatcar", ".*")); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}

	t.Run("coreos", func(t *testing.T) {
		if err := os.MkdirAll(filepath.Join(boot, "coreos"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(boot, "coreos", "vmlinuz-a"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		fs := newFileSet(p, "B")
		if _, err := fs.Open(fileKernel); err != nil {
			t.Fatal(err)
		}
		got, err := fs.install([]AppliedFile{{Name: fileKernel}})
		if err != nil || got[0].Path != filepath.Join(boot, "coreos", "vmlinuz-b") {
			t.Fatalf("%+v, %v", got, err)
		}
	})
	t.Run("discarded", func(t *testing.T) {
		fs := newFileSet(p, "A")
		if _, err := fs.Open(filePCRPolicy); err != nil {
			t.Fatal(err)
		}
		fs.close(true)
		if left, _ := filepath.Glob(filepath.Join(pol, "*pcrs-a*")); len(left) != 0 {
			t.Fatalf("left behind: %v", left)
		}
	})
	t.Run("not verified", func(t *testing.T) {
		fs := newFileSet(p, "A")
		if _, err := fs.Open(filePCRPolicy); err != nil {
			t.Fatal(err)
		}
		defer fs.close(true)
		if _, err := fs.install(nil); mapError(err) != omaha.NewPCRPolicyVerificationError {
			t.Fatalf("install of an unverified file: %v", err)
		}
		if _, err := os.Stat(filepath.Join(pol, "pcrs-a.zip")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("unverified policy installed: %v", err)
		}
	})
}

// TestFullResponse: every update check's answer, update or not, is kept
// byte for byte as the full-response pref; a ping does not replace it.
func TestFullResponse(t *testing.T) {
	bodies := map[string]string{
		"update": `<?xml version="1.0" encoding="UTF-8"?>
<response protocol="3.0" server="test"><daystart elapsed_seconds="0"></daystart><app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" status="ok"><ping status="ok"></ping><updatecheck status="ok"><urls><url codebase="http://127.0.0.1:1/"></url></urls><manifest version="2.0.0"><packages><package name="flatcar_production_update.gz" hash="x" size="100" required="true"></package><package name="oem-azure.gz" hash="y" hash_sha256="00" size="5" required="false"></package></packages><actions><action event="postinstall" sha256="47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="></action></actions></manifest></updatecheck></app></response>`,
		"noupdate": `<?xml version="1.0" encoding="UTF-8"?>
<response protocol="3.0"><daystart elapsed_seconds="0"></daystart><app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" status="ok"><ping status="ok"></ping><updatecheck status="noupdate"></updatecheck></app></response>`,
	}
	var mu sync.Mutex
	answer := "update"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		io.WriteString(w, bodies[answer])
	}))
	defer srv.Close()
	store, err := prefs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := &parts.OmahaChecker{Client: &omaha.Client{Server: srv.URL}, Params: omaha.Params{Version: "1.0.0"}, Prefs: store}
	for _, a := range []string{"update", "noupdate"} {
		mu.Lock()
		answer = a
		mu.Unlock()
		if _, err := c.Check(t.Context(), CheckRequest{InstallSource: "scheduler"}); err != nil {
			t.Fatal(err)
		}
		if got, err := store.Get(prefs.KeyFullResponse); err != nil || string(got) != bodies[a] {
			t.Fatalf("%s: full-response %q, %v", a, got, err)
		}
	}
	mu.Lock()
	answer = "update"
	mu.Unlock()
	if _, err := c.Check(t.Context(), CheckRequest{PingOnly: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.Get(prefs.KeyFullResponse); string(got) != bodies["noupdate"] {
		t.Fatal("a ping replaced full-response")
	}
}

// TestExecPostinstArgs: the post-install program gets the device, then
// KERNEL=<path> and PCR_POLICY=<path>, as separate arguments (FUE's
// postinst_args).
func TestExecPostinstArgs(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "argv")
	prog := filepath.Join(dir, "postinst")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plan := &Plan{PostinstArgs: postinstArgs([]InstalledFile{{Name: fileKernel, Path: "/boot/flatcar/vmlinuz-b"}, {Name: filePCRPolicy, Path: "/var/lib/update_engine/pcrs-b.zip"}})}
	if err := (parts.ExecPostinst{Path: prog}).Run(t.Context(), "/dev/sda4", plan); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if want := "/dev/sda4\nKERNEL=/boot/flatcar/vmlinuz-b\nPCR_POLICY=/var/lib/update_engine/pcrs-b.zip\n"; string(got) != want {
		t.Fatalf("argv %q, want %q", got, want)
	}
}
