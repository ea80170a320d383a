package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// leftovers lists the temp files in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), TempPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestWriteFileReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old content, longer"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "new" {
		t.Fatalf("read %q, %v; want \"new\"", b, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644 (not CreateTemp's 0600)", fi.Mode(), err)
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Errorf("temp files left: %v", l)
	}
}

// TestWriteFileFailsClosed: a target that cannot be replaced (a
// non-empty directory) keeps its content and no temp file stays.
func TestWriteFileFailsClosed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "d")
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("new"), 0o644); err == nil {
		t.Fatal("WriteFile over a non-empty directory succeeded")
	}
	if fi, err := os.Stat(filepath.Join(path, "x")); err != nil || !fi.IsDir() {
		t.Errorf("the target changed: %v", err)
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Errorf("temp files left: %v", l)
	}
	if err := WriteFile(filepath.Join(dir, "missing", "f"), nil, 0o644); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	}
}

func TestCreateCommitRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "payload")
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(f.Name()), TempPrefix+"payload-") || filepath.Dir(f.Name()) != dir {
		t.Errorf("temp file %s, want %s%s-* in %s", f.Name(), TempPrefix, "payload", dir)
	}
	if _, err := f.WriteString("streamed"); err != nil {
		t.Fatal(err)
	}
	if err := Commit(f, path, 0o640); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "streamed" {
		t.Errorf("content %q", b)
	}
	moved := filepath.Join(dir, "moved")
	if err := Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("old path still there: %v", err)
	}
	if err := Rename(path, moved); err == nil {
		t.Error("Rename of a missing file succeeded")
	}
	if b, _ := os.ReadFile(moved); string(b) != "streamed" {
		t.Errorf("moved content %q", b)
	}
}
