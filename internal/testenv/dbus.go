package testenv

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
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

// SystemDBus starts a private dbus-daemon configured like the system bus
// (<type>system</type>, default policy from dbus's system.conf: nobody may
// own names or send method calls; signals and requested replies pass) and
// includes the policy files at the absolute paths in includes, as
// /usr/share/dbus-1/system.d/ would. Root may also become a monitor
// (Monitor). Its socket is reachable by other users, so tests can run
// clients as nobody (runuser -u nobody). Needs root: the policy names users.
func SystemDBus(t testing.TB, includes ...string) string {
	t.Helper()
	RequireRoot(t)
	var inc strings.Builder
	for _, p := range includes {
		inc.WriteString("  <include>" + p + "</include>\n")
	}
	addr := StartDBusConfig(t, func(sock string) string {
		return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=` + sock + `</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
` + inc.String() + `</busconfig>
`
	}).Addr
	ShareSocket(t, addr)
	return addr
}

// ShareSocket lets other users reach the bus socket of addr: the test
// directories are 0700.
func ShareSocket(t testing.TB, addr string) {
	t.Helper()
	p := strings.TrimPrefix(strings.SplitN(addr, ",", 2)[0], "unix:path=")
	for d := filepath.Dir(p); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// BusMonitor sees every message the bus routes (org.freedesktop.DBus.
// Monitoring.BecomeMonitor). The bus hands a message to the monitor in the
// same step as it queues it for its recipients, so once Wait has seen a
// message, every recipient will read it before anything the bus routes
// later: a barrier that does not depend on timing.
type BusMonitor struct {
	ch chan *dbus.Message
}

// Monitor connects to addr as a monitor (needs root on a system bus).
func Monitor(t testing.TB, addr string) *BusMonitor {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.BusObject().Call("org.freedesktop.DBus.Monitoring.BecomeMonitor", 0, []string{}, uint32(0)).Store(); err != nil {
		t.Fatalf("BecomeMonitor: %v", err)
	}
	m := &BusMonitor{ch: make(chan *dbus.Message, 4096)}
	conn.Eavesdrop(m.ch)
	return m
}

// Wait reads routed messages until match accepts one, or fails t after 20 s.
func (m *BusMonitor) Wait(t testing.TB, what string, match func(*dbus.Message) bool) *dbus.Message {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case msg, ok := <-m.ch:
			if !ok {
				t.Fatalf("monitor closed while waiting for %s", what)
			}
			if match(msg) {
				return msg
			}
		case <-deadline:
			t.Fatalf("monitor did not see %s within 20s", what)
		}
	}
}
