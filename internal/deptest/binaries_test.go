package deptest

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// binDeps is one package of a binary's full dependency list.
type binDeps struct {
	path    string
	imports []string
}

// depList runs go list -deps on a main package: every package the binary
// links, standard library and modules included.
func depList(t *testing.T, root, pkg string) []binDeps {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Skip("no go command to list dependencies with")
		}
	}
	cmd := exec.Command(goBin, "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr.String())
	}
	var deps []binDeps
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			deps = append(deps, binDeps{path: f[0], imports: f[1:]})
		}
	}
	return deps
}

// binaryViolations applies the rules for what a shipped binary links.
func binaryViolations(module, bin string, deps []binDeps) []string {
	var bad []string
	for _, d := range deps {
		switch d.path {
		case "testing", "net/http/httptest":
			bad = append(bad, bin+" links "+d.path+": test code reached a binary")
		}
		if isPrometheus(d.path) || d.path == module+"/internal/metrics" {
			continue
		}
		for _, imp := range d.imports {
			if isPrometheus(imp) {
				bad = append(bad, bin+": "+d.path+" imports "+imp+": Prometheus only through internal/metrics")
			}
		}
	}
	return bad
}

func isPrometheus(p string) bool { return strings.HasPrefix(p, "github.com/prometheus/") }

// TestBinaryDeps: each binary's full dependency list has no testing, no
// httptest, and reaches Prometheus only through internal/metrics (as
// tailscale's depaware checks, tstest/deptest).
func TestBinaryDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list for every binary")
	}
	root, module := moduleRoot(t)
	ents, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	var bins []string
	for _, e := range ents {
		if e.IsDir() {
			bins = append(bins, "./cmd/"+e.Name())
		}
	}
	if len(bins) < 5 {
		t.Fatalf("found %d binaries under cmd/, want the 5 shipped ones", len(bins))
	}
	for _, bin := range bins {
		deps := depList(t, root, bin)
		if !slices.ContainsFunc(deps, func(d binDeps) bool { return d.path == "fmt" }) {
			t.Fatalf("%s: dependency list without fmt; the listing is broken", bin)
		}
		for _, v := range binaryViolations(module, bin, deps) {
			t.Error(v)
		}
	}
}

func TestBinaryRules(t *testing.T) {
	const mod = "example.com/m"
	tests := []struct {
		name string
		deps []binDeps
		want string
	}{
		{name: "clean", deps: []binDeps{{path: "fmt"}, {path: mod + "/internal/metrics", imports: []string{"github.com/prometheus/client_golang/prometheus"}},
			{path: "github.com/prometheus/client_golang/prometheus", imports: []string{"github.com/prometheus/common/model"}}}},
		{name: "testing", deps: []binDeps{{path: "testing"}}, want: "links testing"},
		{name: "httptest", deps: []binDeps{{path: "net/http/httptest"}}, want: "links net/http/httptest"},
		{name: "prometheus elsewhere", deps: []binDeps{{path: mod + "/pkg/rebootmgr", imports: []string{"github.com/prometheus/client_golang/prometheus"}}},
			want: "pkg/rebootmgr imports github.com/prometheus"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := binaryViolations(mod, "./cmd/x", tc.deps)
			switch {
			case tc.want == "" && len(got) != 0:
				t.Errorf("violations = %q, want none", got)
			case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
				t.Errorf("violations = %q, want one mentioning %q", got, tc.want)
			}
		})
	}
}
