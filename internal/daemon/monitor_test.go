package daemon

import (
	"bufio"
	"context"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
)

// TestSignalsWithDbusMonitor watches a whole update with the system's
// dbus-monitor, as an operator would, and checks the StatusUpdate signals
// of /com/coreos/update1 come in the documented order with xdssx bodies,
// and that the ChromeOS path emits them too.
func TestSignalsWithDbusMonitor(t *testing.T) {
	testenv.RequireTool(t, "dbus-monitor")
	w := newOmaha(t)
	w.publish("v2.bin", "2.0.0", image(6<<20, 8), false)
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	h := newHost(t, disk)
	runDaemon(t, h.options(w.url()))
	c := client(t, h.bus)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	mon := exec.CommandContext(ctx, "dbus-monitor", "--address", h.bus, "type='signal',member='StatusUpdate'")
	out, err := mon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = mon.Process.Kill(); _ = mon.Wait() }()

	var mu sync.Mutex // guards lines
	var lines []string
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
		}
	}()
	// dbus-monitor prints its own NameAcquired/NameLost signals once it
	// became a monitor.
	ready := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		ok := strings.Contains(strings.Join(lines, "\n"), "member=NameAcquired")
		mu.Unlock()
		if ok || time.Now().After(ready) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.AttemptUpdate(ctx); err != nil {
		t.Fatal(err)
	}
	waitOp(t, c, 60*time.Second, "UPDATE_STATUS_UPDATED_NEED_REBOOT")
	time.Sleep(300 * time.Millisecond)

	mu.Lock()
	text := strings.Join(lines, "\n")
	mu.Unlock()
	// Split into signals; keep the CoreOS ones.
	var ops []string
	chromeos := 0
	sig := regexp.MustCompile(`(?s)signal .*?path=([^;]+); interface=([^;]+); member=StatusUpdate\n\s+int64 -?\d+\n\s+double [0-9.e+-]+\n\s+string "([A-Z_]+)"\n\s+string "[^"]*"\n\s+int64 \d+`)
	for _, m := range sig.FindAllStringSubmatch(text, -1) {
		switch {
		case m[1] == "/com/coreos/update1" && m[2] == "com.coreos.update1.Manager":
			if len(ops) == 0 || ops[len(ops)-1] != m[3] {
				ops = append(ops, m[3])
			}
		case m[1] == "/org/chromium/UpdateEngine" && m[2] == "org.chromium.UpdateEngineInterface":
			chromeos++
		}
	}
	want := []string{"UPDATE_STATUS_CHECKING_FOR_UPDATE", "UPDATE_STATUS_UPDATE_AVAILABLE", "UPDATE_STATUS_DOWNLOADING",
		"UPDATE_STATUS_VERIFYING", "UPDATE_STATUS_FINALIZING", "UPDATE_STATUS_UPDATED_NEED_REBOOT"}
	if !slices.Equal(ops, want) {
		t.Fatalf("dbus-monitor saw %v\nwant %v\n%s", ops, want, text)
	}
	if chromeos < len(want) {
		t.Fatalf("only %d StatusUpdate signals from /org/chromium/UpdateEngine", chromeos)
	}
}
