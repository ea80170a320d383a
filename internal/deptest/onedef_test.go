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

// onePlace are other values with one definition: literal → its package.
var onePlace = map[string]string{
	"https://public.update.flatcar-linux.net/v1/update/": "pkg/omaha", // DefaultServer
}

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

// literal is a string literal that has one place, and that place.
type literal struct{ owner, where string }

// vocabularyCopies lists the literals in one file's source that have one
// place to be defined.
func vocabularyCopies(name string, src []byte) ([]literal, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var out []literal
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			return true
		}
		owner := onePlace[s]
		if owner == "" && vocabularyLiteral(s) {
			owner = vocabularyPkg
		}
		if owner != "" {
			out = append(out, literal{owner: owner, where: fset.Position(lit.Pos()).String() + ": " + lit.Value})
		}
		return true
	})
	return out, nil
}

// TestOneDefinition: the D-Bus name, path and interface names and the
// status strings appear as literals only in pkg/update1, and the values of
// onePlace only in theirs (test files aside, which may spell out what they
// expect on the wire).
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
		for _, c := range copies {
			switch {
			case filepath.ToSlash(rel) != c.owner:
				t.Errorf("%s: defined again outside %s; use its constant", c.where, c.owner)
			case c.owner == vocabularyPkg:
				found++
			}
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
const d = "https://public.update.flatcar-linux.net/v1/update/"
// "UPDATE_STATUS_IDLE" in a comment is fine
`)
	got, err := vocabularyCopies("x.go", src)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[4].owner != "pkg/omaha" {
		t.Errorf("copies = %q, want the 5 definitions, the last pkg/omaha's", got)
	}
}
