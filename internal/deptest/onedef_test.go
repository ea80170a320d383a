package deptest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// vocabularyPkg is where the com.coreos.update1 names and the status
// strings are defined, once.
const vocabularyPkg = "pkg/update1"

// statusString matches a CURRENT_OP string or its prefix.
var statusString = regexp.MustCompile(`^UPDATE_STATUS_[A-Z_]*$`)

// vocabularyLiteral reports whether a string constant in Go source is a
// definition of update1's vocabulary: the bus name, or a name below it
// (interface, error), its object path, or a status string. The D-Bus
// policy file's name (com.coreos.update1.conf) is a file, not the name.
func vocabularyLiteral(s string) bool {
	switch {
	case strings.HasSuffix(s, ".conf"):
		return false
	case s == "com.coreos.update1", strings.HasPrefix(s, "com.coreos.update1."), s == "/com/coreos/update1":
		return true
	}
	return statusString.MatchString(s)
}

// vocabularyCopies lists the vocabulary literals in one file's source.
func vocabularyCopies(name string, src []byte) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		if s, err := strconv.Unquote(lit.Value); err == nil && vocabularyLiteral(s) {
			out = append(out, fset.Position(lit.Pos()).String()+": "+lit.Value)
		}
		return true
	})
	return out, nil
}

// TestOneDefinition: the D-Bus name, path and interface names and the
// status strings appear as literals only in pkg/update1 (test files
// aside, which may spell out what they expect on the wire).
func TestOneDefinition(t *testing.T) {
	root, _ := moduleRoot(t)
	found := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		copies, err := vocabularyCopies(path, src)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		if filepath.ToSlash(rel) == vocabularyPkg {
			found += len(copies)
			return nil
		}
		for _, c := range copies {
			t.Errorf("%s: defined again outside %s; use its constant", c, vocabularyPkg)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < 12 {
		t.Errorf("found %d vocabulary literals in %s, want its names and 8 status strings; the scan is broken", found, vocabularyPkg)
	}
}

func TestVocabularyLiteral(t *testing.T) {
	src := []byte(`package x
const a = "com.coreos.update1"
const b = "com.coreos.update1.Manager"
var c = []string{"UPDATE_STATUS_IDLE", "/com/coreos/update1"}
const ok1 = "com.coreos.update1.conf"
const ok2 = "share/dbus-1/system.d/com.coreos.update1.conf"
const ok3 = "UPDATE_STATUS_IDLE is the idle state"
// "UPDATE_STATUS_IDLE" in a comment is fine
`)
	got, err := vocabularyCopies("x.go", src)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Errorf("copies = %q, want the 4 definitions", got)
	}
}
