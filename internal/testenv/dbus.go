package testenv

import (
	"bufio"
	"fmt"
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
		return busConfig("session", sock, `  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
`)
	})
}

// busConfig is a dbus-daemon configuration of type kind (session,
// system) listening on sock, EXTERNAL auth, with body (policies,
// includes).
func busConfig(kind, sock, body string) string {
	return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>` + kind + `</type>
  <listen>unix:path=` + sock + `</listen>
  <auth>EXTERNAL</auth>
` + body + `</busconfig>
`
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
		return busConfig("system", sock, `  <policy context="default">
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
`+inc.String())
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
	if err := conn.BusObject().Call("org.freedesktop.DBus.Monitoring.BecomeMonitor", 0, []string{}, uint32(0)).Store(); err != nil {
		conn.Close()
		t.Fatalf("BecomeMonitor: %v", err)
	}
	m := &BusMonitor{ch: make(chan *dbus.Message, 4096)}
	conn.Eavesdrop(m.ch)
	t.Cleanup(func() {
		// godbus's Close closes an eavesdrop channel its reader may still
		// send on (a panic): detach it first.
		conn.Eavesdrop(nil)
		conn.Close()
	})
	return m
}

// Wait reads routed messages until match accepts one, or fails t after 20 s.
func (m *BusMonitor) Wait(t testing.TB, what string, match func(*dbus.Message) bool) *dbus.Message {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case msg := <-m.ch:
			if match(msg) {
				return msg
			}
		case <-deadline:
			t.Fatalf("monitor did not see %s within 20s", what)
		}
	}
}

// EmitAs sends one signal as user through `runuser -u user -- busctl emit`
// (dest "" broadcasts it, else it is unicast to dest), waits until m has
// seen the bus route it, and returns the sender's unique name. args are
// busctl's words after SIGNATURE; the routed body must print the same.
func (m *BusMonitor) EmitAs(t testing.TB, user, addr, dest string, path dbus.ObjectPath, iface, member, sig string, args ...string) string {
	t.Helper()
	RequireTool(t, "runuser", "busctl")
	cmd := []string{"-u", user, "--", "busctl", "--address=" + addr, "emit"}
	if dest != "" {
		cmd = append(cmd, "--destination="+dest)
	}
	cmd = append(cmd, string(path), iface, member, sig)
	if out, err := exec.Command("runuser", append(cmd, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("busctl emit as %s: %v: %s", user, err, out)
	}
	what := fmt.Sprintf("%s.%s%v from %s", iface, member, args, user)
	msg := m.Wait(t, what, func(msg *dbus.Message) bool {
		h := func(f dbus.HeaderField) string {
			v, _ := msg.Headers[f].Value().(string)
			return v
		}
		p, _ := msg.Headers[dbus.FieldPath].Value().(dbus.ObjectPath)
		if msg.Type != dbus.TypeSignal || p != path || h(dbus.FieldInterface) != iface || h(dbus.FieldMember) != member ||
			h(dbus.FieldDestination) != dest || len(msg.Body) != len(args) {
			return false
		}
		for i, a := range args {
			if fmt.Sprint(msg.Body[i]) != a {
				return false
			}
		}
		return true
	})
	sender, _ := msg.Headers[dbus.FieldSender].Value().(string)
	return sender
}
