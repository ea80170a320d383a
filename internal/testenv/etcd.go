package testenv

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Etcd is a running single-member etcd server started by StartEtcd.
type Etcd struct {
	// Endpoint is the client URL, http://127.0.0.1:PORT.
	Endpoint string
	// DataDir is the server's temporary data directory.
	DataDir string

	cmd *exec.Cmd
}

// Kill stops the server at once (SIGKILL), as a crash would. Cleanup
// tolerates a killed server.
func (e *Etcd) Kill() {
	if e.cmd.Process != nil {
		_ = e.cmd.Process.Kill()
	}
}

// Etcdctl runs Debian's etcdctl (v3 API) against e and returns its
// combined output.
func (e *Etcd) Etcdctl(t testing.TB, args ...string) string {
	t.Helper()
	RequireTool(t, "etcdctl")
	cmd := exec.Command("etcdctl", append([]string{"--endpoints=" + e.Endpoint}, args...)...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("etcdctl %v: %v: %s", args, err, out)
	}
	return string(out)
}

// StartEtcd starts Debian's etcd on two free 127.0.0.1 ports with a
// temporary data directory, waits until it answers /health, and stops it
// (and removes the data) in t.Cleanup. It skips t when etcd is missing.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	RequireTool(t, "etcd")
	dir := t.TempDir()
	client, peer := freePort(t), freePort(t)
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("etcd",
		"--name=test",
		"--data-dir="+filepath.Join(dir, "data"),
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=test="+peerURL,
		"--initial-cluster-state=new",
		"--log-level=error",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	e := &Etcd{Endpoint: clientURL, DataDir: dir, cmd: cmd}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logf.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(clientURL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return e
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
			t.Fatalf("etcd did not become healthy within 20s: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort asks the kernel for a free TCP port on 127.0.0.1. There is a
// small window in which another process may take it; etcd then fails to
// start and the test fails loudly.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
