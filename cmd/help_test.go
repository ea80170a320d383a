// Package cmd_test checks what every binary under cmd/ has in common.
package cmd_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// commands are each binary's commands (and the reboot manager's lock
// verbs): every one must answer -h and --help.
var commands = map[string][][]string{
	"update_engine":        {nil},
	"update_engine_client": {nil},
	"omaha_devserver":      {nil},
	"payload_generator":    {nil, {"generate"}, {"show"}, {"verify"}, {"apply"}, {"keygen"}, {"sign"}},
	"update_engine_reboot_manager": {nil, {"run"}, {"lock"}, {"lock", "status"}, {"lock", "lock"}, {"lock", "unlock"},
		{"lock", "reboot"}, {"lock", "send-need-reboot"}, {"lock", "set-max"}},
}

// TestHelp builds every binary in cmd/ and runs -h and --help of each of
// its commands: each exits 0, prints something, and does nothing else
// (no daemon starts: each must return within the timeout).
func TestHelp(t *testing.T) {
	dir := t.TempDir()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var bins []string
	for _, e := range entries {
		if e.IsDir() {
			bins = append(bins, e.Name())
		}
	}
	if len(bins) != len(commands) {
		t.Fatalf("cmd/ holds %v; this test knows %d binaries: list the new one's commands", bins, len(commands))
	}
	if out, err := exec.Command("go", "build", "-o", dir+"/", "./...").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, bin := range bins {
		cmds, ok := commands[bin]
		if !ok {
			t.Errorf("cmd/%s: commands not listed in this test", bin)
			continue
		}
		for _, c := range cmds {
			for _, h := range []string{"-h", "--help"} {
				args := append(append([]string(nil), c...), h)
				ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
				out, err := exec.CommandContext(ctx, filepath.Join(dir, bin), args...).CombinedOutput()
				cancel()
				if err != nil || len(strings.TrimSpace(string(out))) == 0 {
					t.Errorf("%s %s: %v (output %d bytes)\n%s", bin, strings.Join(args, " "), err, len(out), out)
				}
			}
		}
	}
}
