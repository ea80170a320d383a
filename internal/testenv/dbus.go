package testenv

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// DBus starts a private dbus-daemon for t and returns its address
// (unix:path=…). The bus allows every connection and message, like a
// session bus; policy files are tested separately. It is stopped in
// t.Cleanup.
func DBus(t testing.TB) string {
	t.Helper()
	return StartDBus(t).Addr
}

// Bus is a private dbus-daemon started by StartDBus.
type Bus struct {
	Addr string
	cmd  *exec.Cmd
}

// Kill stops the bus at once (SIGKILL), as a crashed dbus-daemon would.
func (b *Bus) Kill() {
	_ = b.cmd.Process.Kill()
}

// StartDBus is DBus for tests that also need to kill the bus.
func StartDBus(t testing.TB) *Bus {
	t.Helper()
	return StartDBusConfig(t, func(sock string) string {
		return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=` + sock + `</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
`
	})
}

// StartDBusConfig starts a dbus-daemon with the configuration conf returns
// for the socket path sock, for tests of bus policy.
func StartDBusConfig(t testing.TB, conf func(sock string) string) *Bus {
	t.Helper()
	RequireTool(t, "dbus-daemon")
	dir := t.TempDir()
	confPath := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(confPath, []byte(conf(filepath.Join(dir, "bus"))), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dbus-daemon", "--config-file="+confPath, "--nofork", "--print-address=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	b := &Bus{cmd: cmd}
	addrc := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addrc <- strings.TrimSpace(line)
	}()
	select {
	case addr := <-addrc:
		if addr == "" {
			t.Fatal("dbus-daemon printed no address")
		}
		b.Addr = addr
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("dbus-daemon did not start within 10s")
	}
	return nil
}
