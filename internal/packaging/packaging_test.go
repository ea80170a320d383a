package packaging

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/updateconf"
)

// The version the package under test is built with, and the Debian
// version scripts/mkdeb.sh derives from it.
const (
	testVersion    = "v9.8.7-6-gtest"
	testDebVersion = "9.8.7+6.gtest-1"
)

var (
	debOnce sync.Once
	debFile string // the .deb built once for every test of this package
	debTree string // its contents (dpkg-deb -x)
	debErr  string
	debDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if debDir != "" {
		os.RemoveAll(debDir)
	}
	os.Exit(code)
}

// pkg builds update-engine_<version>_<host arch>.deb once with
// scripts/mkdeb.sh (what `make deb` runs) and extracts it; every test here
// checks that package, not a second build. UE_TEST_DEB names a package
// built before (VERSION=v9.8.7-6-gtest scripts/mkdeb.sh ARCH DIR) to use
// instead, for quicker runs while working on these tests.
func pkg(t *testing.T) (deb, tree string) {
	t.Helper()
	testenv.RequireTool(t, "dpkg-deb", "make", "gzip")
	debOnce.Do(func() {
		var err error
		if debDir, err = os.MkdirTemp("", "ue-packaging-"); err != nil {
			debErr = err.Error()
			return
		}
		debTree = filepath.Join(debDir, "tree")
		if debFile = os.Getenv("UE_TEST_DEB"); debFile != "" {
			if out, err := exec.Command("dpkg-deb", "-x", debFile, debTree).CombinedOutput(); err != nil {
				debErr = "dpkg-deb -x: " + err.Error() + string(out)
			}
			return
		}
		arch, err := exec.Command("go", "env", "GOARCH").Output()
		if err != nil {
			debErr = err.Error()
			return
		}
		cmd := exec.Command("scripts/mkdeb.sh", strings.TrimSpace(string(arch)), debDir)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "VERSION="+testVersion, "DEB_COMPRESS=gzip")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			debErr = err.Error() + ": " + stderr.String()
			return
		}
		debFile = strings.TrimSpace(string(out))
		if out, err := exec.Command("dpkg-deb", "-x", debFile, debTree).CombinedOutput(); err != nil {
			debErr = "dpkg-deb -x: " + err.Error() + string(out)
		}
	})
	if debErr != "" {
		t.Fatalf("building the package: %s", debErr)
	}
	return debFile, debTree
}

var binaries = map[string]string{ // name → directory in the package
	"update_engine":                "usr/sbin",
	"update_engine_client":         "usr/sbin",
	"update_engine_reboot_manager": "usr/sbin",
	"payload_generator":            "usr/bin",
	"omaha_devserver":              "usr/bin",
}

// TestVersion: every binary answers --version with the version `make`
// linked in from VERSION (git describe).
func TestVersion(t *testing.T) {
	deb, tree := pkg(t)
	if filepath.Base(deb) != "update-engine_"+testDebVersion+"_"+runtimeArch(t)+".deb" {
		t.Errorf("package file %s", deb)
	}
	for name, dir := range binaries {
		out, err := exec.Command(filepath.Join(tree, dir, name), "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), name+" "+testVersion+" (go") {
			t.Errorf("%s --version: %v: %q", name, err, out)
		}
	}
}

func runtimeArch(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// pages are the man pages: source, installed path.
var pages = []struct{ src, installed string }{
	{"update_engine.8.md", "usr/share/man/man8/update_engine.8.gz"},
	{"update_engine_client.8.md", "usr/share/man/man8/update_engine_client.8.gz"},
	{"update_engine_reboot_manager.8.md", "usr/share/man/man8/update_engine_reboot_manager.8.gz"},
	{"payload_generator.1.md", "usr/share/man/man1/payload_generator.1.gz"},
	{"omaha_devserver.1.md", "usr/share/man/man1/omaha_devserver.1.gz"},
	{"update.conf.5.md", "usr/share/man/man5/update.conf.5.gz"},
}

// TestManPagesRender: `man -l` renders every installed page without a
// warning, with its NAME section and the version in the footer.
func TestManPagesRender(t *testing.T) {
	testenv.RequireTool(t, "man")
	_, tree := pkg(t)
	for _, p := range pages {
		cmd := exec.Command("man", "--warnings", "-l", filepath.Join(tree, p.installed))
		cmd.Env = append(os.Environ(), "MANWIDTH=100", "PAGER=cat", "MANPAGER=cat")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		out = regexp.MustCompile(".\b").ReplaceAll(out, nil) // bold and underline overstrikes
		name := strings.SplitN(p.src, ".", 2)[0]
		if name == "update" {
			name = "update.conf"
		}
		if err != nil || stderr.Len() > 0 {
			t.Errorf("man -l %s: %v: %s", p.installed, err, stderr.String())
		}
		text := strings.Join(strings.Fields(string(out)), " ")
		if !strings.Contains(text, "NAME "+name+" - ") || !strings.Contains(text, testVersion) {
			t.Errorf("man -l %s: no NAME line or version:\n%s", p.installed, out)
		}
	}
}

// pageFlags are the options a page documents: every **-name** on a
// definition term line (a line starting with **-).
func pageFlags(t *testing.T, src string) []string {
	b, err := os.ReadFile(filepath.Join("../../docs/man", src))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`\*\*-{1,2}([A-Za-z0-9_-]+)\*\*`)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "**-") {
			continue
		}
		for _, m := range re.FindAllStringSubmatch(line, -1) {
			out = append(out, m[1])
		}
	}
	return uniq(out)
}

func uniq(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}

// helpFlags are the flags a --help (flag.PrintDefaults) lists: lines
// "  -name" after the last "…flags:" or "Usage of …:" line.
func helpFlags(t *testing.T, bin string, args ...string) []string {
	out, _ := exec.Command(bin, args...).CombinedOutput()
	lines := strings.Split(string(out), "\n")
	start := -1
	head := regexp.MustCompile(`(?i)(flags:|^usage of .*:)$`)
	for i, l := range lines {
		if head.MatchString(strings.TrimSpace(l)) {
			start = i
		}
	}
	if start < 0 {
		t.Fatalf("%s %q: no flag list in:\n%s", bin, args, out)
	}
	re := regexp.MustCompile(`^  -([A-Za-z0-9_-]+)(\s|$)`)
	var flags []string
	for _, l := range lines[start+1:] {
		if m := re.FindStringSubmatch(l); m != nil {
			flags = append(flags, m[1])
		}
	}
	return flags
}

// sourceFlags are the flags cmd/payload_generator defines: the name
// argument of every fs.String/Bool/Var/StringVar/… call in its sources
// (its subcommands' --help lists none).
func sourceFlags(t *testing.T, dir string) []string {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	define := regexp.MustCompile(`^(Bool|String|Int|Int64|Uint|Uint64|Float64|Duration|Func|BoolFunc|TextVar|Var)(Var)?$`)
	var out []string
	for _, p := range pkgs {
		for _, f := range p.Files {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !define.MatchString(sel.Sel.Name) {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "fs" {
					return true
				}
				i := 0
				if strings.HasSuffix(sel.Sel.Name, "Var") && sel.Sel.Name != "Var" || sel.Sel.Name == "Var" || sel.Sel.Name == "TextVar" {
					i = 1
				}
				if i < len(call.Args) {
					if lit, ok := call.Args[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						if s, err := strconv.Unquote(lit.Value); err == nil {
							out = append(out, s)
						}
					}
				}
				return true
			})
		}
	}
	return out
}

// TestManPagesMatchFlags keeps each page in step with its binary: every
// flag the binary defines is in its page, and every option the page lists
// is a flag of the binary.
func TestManPagesMatchFlags(t *testing.T) {
	_, tree := pkg(t)
	bin := func(name string) string { return filepath.Join(tree, binaries[name], name) }
	cases := map[string][]string{
		"update_engine.8.md":        helpFlags(t, bin("update_engine"), "--help"),
		"update_engine_client.8.md": helpFlags(t, bin("update_engine_client"), "--help"),
		"omaha_devserver.1.md":      helpFlags(t, bin("omaha_devserver"), "--help"),
		"update_engine_reboot_manager.8.md": append(append(helpFlags(t, bin("update_engine_reboot_manager"), "run", "-h"),
			helpFlags(t, bin("update_engine_reboot_manager"), "lock", "-h")...), "version"),
		"payload_generator.1.md": append(sourceFlags(t, "../../cmd/payload_generator"), "version"),
	}
	for src, flags := range cases {
		flags = uniq(flags)
		if len(flags) < 5 {
			t.Fatalf("%s: only %d flags found: %q", src, len(flags), flags)
		}
		documented := pageFlags(t, src)
		for _, f := range flags {
			if !slices.Contains(documented, f) {
				t.Errorf("%s does not document the flag -%s", src, f)
			}
		}
		for _, f := range documented {
			if !slices.Contains(flags, f) {
				t.Errorf("%s documents -%s, which the binary does not define", src, f)
			}
		}
	}
}

// TestUpdateConfPage: update.conf(5) names every key pkg/updateconf knows,
// and only those (and the release file's).
func TestUpdateConfPage(t *testing.T) {
	b, err := os.ReadFile("../../docs/man/update.conf.5.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range updateconf.Keys {
		if !strings.Contains(string(b), "**"+k+"**") {
			t.Errorf("update.conf.5.md does not describe %s", k)
		}
	}
	for _, m := range regexp.MustCompile(`\*\*([A-Z][A-Z0-9_]+)\*\*`).FindAllStringSubmatch(string(b), -1) {
		if !slices.Contains(updateconf.Keys, m[1]) {
			t.Errorf("update.conf.5.md describes %s, which pkg/updateconf does not know", m[1])
		}
	}
}

// TestBashCompletion sources each installed completion in bash and asks
// it to complete a known flag and a subcommand.
func TestBashCompletion(t *testing.T) {
	testenv.RequireTool(t, "bash")
	_, tree := pkg(t)
	dir := filepath.Join(tree, "usr/share/bash-completion/completions")
	for _, c := range []struct {
		file, fn string
		words    []string
		want     string
	}{
		{"update_engine_client", "_update_engine_client", []string{"update_engine_client", "-sta"}, "-status"},
		{"update_engine_client", "_update_engine_client", []string{"update_engine_client", "--progress", "b"}, "bar"},
		{"payload_generator", "_payload_generator", []string{"payload_generator", "gen"}, "generate"},
		{"payload_generator", "_payload_generator", []string{"payload_generator", "generate", "--compr"}, "--compression"},
		{"payload_generator", "_payload_generator", []string{"payload_generator", "apply", "--insecure"}, "--insecure-skip-signature"},
	} {
		var words []string
		for _, w := range c.words {
			words = append(words, strconv.Quote(w))
		}
		script := `source "$1"; COMP_WORDS=(` + strings.Join(words, " ") + `); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); ` +
			c.fn + `; printf '%s\n' "${COMPREPLY[@]}"`
		out, err := exec.Command("bash", "-c", script, "bash", filepath.Join(dir, c.file)).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != c.want {
			t.Errorf("completing %q: %v: got %q, want %q", c.words, err, out, c.want)
		}
	}
}
