package daemon

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

// TestClientAgainstDaemon runs the real update_engine_client binary
// against the real daemon: -update waits for the result, -status prints
// Flatcar's block, -reset_status clears the reboot state, and with the
// daemon gone the client says so and exits 1 (after one try here; Flatcar's
// four tries 10 s apart are the default).
func TestClientAgainstDaemon(t *testing.T) {
	testenv.RequireTool(t, "go")
	bin := filepath.Join(t.TempDir(), "update_engine_client")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/abupdate/update_engine/cmd/update_engine_client").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	w := newOmaha(t)
	w.publish("v2.bin", "2.0.0", image(4<<20, 12), false)
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	h := newHost(t, disk)
	stop := runDaemon(t, h.options(w.url()))
	client(t, h.bus) // wait until it answers

	cli := func(args ...string) (string, string, int) {
		cmd := exec.CommandContext(t.Context(), bin, append(args, "--bus", h.bus)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	out, errs, code := cli("-update", "--poll-interval", "100ms")
	if code != 0 || !strings.HasSuffix(out, "CURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT\nNEW_VERSION=2.0.0\nNEW_SIZE="+newSize(t, out)+"\n") {
		t.Fatalf("-update: code %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	out, _, code = cli("-status")
	block := regexp.MustCompile(`^LAST_CHECKED_TIME=[1-9]\d*\nPROGRESS=\d\.\d{6}\nCURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT\nNEW_VERSION=2\.0\.0\nNEW_SIZE=[1-9]\d*\n$`)
	if code != 0 || !block.MatchString(out) {
		t.Fatalf("-status: code %d\n%q", code, out)
	}
	if _, errs, code := cli("-reset_status"); code != 0 {
		t.Fatalf("-reset_status: %d %s", code, errs)
	}
	if out, _, _ := cli("-status"); !strings.Contains(out, "CURRENT_OP=UPDATE_STATUS_IDLE\nNEW_VERSION=0.0.0\nNEW_SIZE=0\n") {
		t.Fatalf("after reset:\n%s", out)
	}
	if out, _, code := cli("--json"); code != 0 || !strings.Contains(out, `"next_boot_slot":"B"`) {
		t.Fatalf("--json: %d %s", code, out)
	}
	stop()
	if _, errs, code := cli("-status", "--connect-tries", "1"); code != 1 || !strings.Contains(errs, "not running") {
		t.Fatalf("daemon stopped: code %d, stderr %q", code, errs)
	}
}

func newSize(t *testing.T, out string) string {
	m := regexp.MustCompile(`NEW_SIZE=(\d+)\n$`).FindStringSubmatch(out)
	if m == nil {
		return "?"
	}
	return m[1]
}
