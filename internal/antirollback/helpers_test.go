package antirollback

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

// logRecorder collects log lines; mu guards lines.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

func (r *logRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

// tpm2Tool runs a tpm2-tools command against tp and returns its stdout.
func tpm2Tool(t *testing.T, tp *testenv.Swtpm, name string, args ...string) ([]byte, error) {
	t.Helper()
	testenv.RequireTool(t, name)
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+tp.TCTI)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, errb.Bytes())
	}
	return out.Bytes(), nil
}

// nvread reads the floor index with tpm2_nvread, independently of go-tpm.
func nvread(t *testing.T, tp *testenv.Swtpm, index uint32) (Version, error) {
	t.Helper()
	out, err := tpm2Tool(t, tp, "tpm2_nvread", "-s", "8", fmt.Sprintf("0x%08x", index))
	if err != nil {
		return 0, err
	}
	if len(out) != 8 {
		return 0, fmt.Errorf("tpm2_nvread printed %d bytes: %x", len(out), out)
	}
	return Version(binary.BigEndian.Uint64(out)), nil
}

// pcrread reads one SHA-256 PCR with tpm2_pcrread.
func pcrread(t *testing.T, tp *testenv.Swtpm, pcr int) []byte {
	t.Helper()
	f := filepath.Join(t.TempDir(), "pcr")
	if _, err := tpm2Tool(t, tp, "tpm2_pcrread", "-o", f, fmt.Sprintf("sha256:%d", pcr)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustVersion(t testing.TB, s string) Version {
	t.Helper()
	v, err := ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// openSwtpm opens a Guard on tp and closes it in cleanup.
func openSwtpm(t *testing.T, tp *testenv.Swtpm, cfg Config) *Guard {
	t.Helper()
	cfg.Addr = tp.Addr
	g, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}
