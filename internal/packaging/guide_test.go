package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

// guideBlocks returns the bodies of the ```sh test blocks of a Markdown
// file, in order.
func guideBlocks(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "```sh test":
			in, cur = true, nil
		case in && strings.TrimSpace(line) == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, line)
		}
	}
	if in {
		t.Fatalf("%s: unterminated code block", path)
	}
	return blocks
}

// TestOperatorsGuide runs the guide's `sh test` blocks, in order, in one
// bash (set -euo pipefail) in an empty directory, with the package's
// binaries first on PATH. The other blocks change a live host and say so.
func TestOperatorsGuide(t *testing.T) {
	testenv.RequireTool(t, "bash", "sgdisk", "mkfs.ext4")
	_, tree := pkg(t)
	blocks := guideBlocks(t, "../../docs/operators-guide.md")
	if len(blocks) < 5 {
		t.Fatalf("only %d test blocks in the guide", len(blocks))
	}
	dir := t.TempDir()
	script := "set -euo pipefail\n"
	for i, b := range blocks {
		script += "echo '### block " + string(rune('0'+i)) + "'\n" + b + "\n"
	}
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Join(tree, "usr/sbin")+":"+filepath.Join(tree, "usr/bin")+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("the guide's commands failed: %v", err)
	}
	// What the blocks claim: slot A good and booting next, the payloads
	// signed (the rotated one verifies with either key), the kernel carried.
	for _, want := range []string{"USR-A  1         0      1           yes", "### block 1\nA\n", "procedure KERNEL", "omaha_devserver " + testVersion} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the guide's output lacks %q", want)
		}
	}
	if n := strings.Count(string(out), "signature verified"); n != 3 {
		t.Errorf("%d payloads verified; want 3", n)
	}
	for _, f := range []string{"update-1.1.0.payload.json", "update-1.2.0.payload", "flatcar-1.2.0.payload", "payloads/update-1.2.0.payload"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("the guide should have written %s: %v", f, err)
		}
	}
}
