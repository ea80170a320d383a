package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdCluster is a cluster of Debian etcd members on 127.0.0.1 ports,
// started by StartEtcdCluster. Its methods may be called from several
// goroutines.
type EtcdCluster struct {
	Members []*EtcdMember
}

// EtcdMember is one member of an EtcdCluster: a separate etcd process
// that can be killed, frozen (SIGSTOP) and restarted on its data.
type EtcdMember struct {
	Name     string
	Endpoint string // client URL, http://127.0.0.1:PORT
	DataDir  string // data and etcd.log

	args []string
	log  *os.File

	mu  sync.Mutex // guards cmd
	cmd *exec.Cmd
}

// StartEtcdCluster starts n etcd members that form one cluster (plain
// http on 127.0.0.1, data in temporary directories), waits until each
// answers /health, and kills them all in t.Cleanup. It skips t when etcd
// is missing.
func StartEtcdCluster(t testing.TB, n int) *EtcdCluster {
	t.Helper()
	RequireTool(t, "etcd")
	c := &EtcdCluster{}
	var initial []string
	for i := range n {
		dir := t.TempDir()
		m := &EtcdMember{
			Name:     fmt.Sprintf("m%d", i),
			Endpoint: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
			DataDir:  dir,
		}
		peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
		initial = append(initial, m.Name+"="+peer)
		m.args = []string{
			"--name=" + m.Name,
			"--data-dir=" + filepath.Join(dir, "data"),
			"--listen-client-urls=" + m.Endpoint,
			"--advertise-client-urls=" + m.Endpoint,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster-token=testenv-cluster",
			"--initial-cluster-state=new",
			"--log-level=error",
		}
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.args = append(m.args, "--initial-cluster="+strings.Join(initial, ","))
		log, err := os.Create(filepath.Join(m.DataDir, "etcd.log"))
		if err != nil {
			t.Fatal(err)
		}
		m.log = log
		t.Cleanup(func() {
			m.Kill()
			_ = log.Close()
		})
		if err := m.start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range c.Members {
		if err := m.WaitHealthy(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// Endpoints returns every member's client URL.
func (c *EtcdCluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.Endpoint)
	}
	return out
}

// Leader returns the member that says it is the leader (etcd's
// maintenance Status), asking each with a short timeout; nil when none
// does (an election is under way, or the leader is frozen).
func (c *EtcdCluster) Leader(ctx context.Context) *EtcdMember {
	for _, m := range c.Members {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.Endpoint}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(sctx, m.Endpoint)
		cancel()
		cli.Close()
		if err == nil && st.Leader != 0 && st.Header.MemberId == st.Leader {
			return m
		}
	}
	return nil
}

func (m *EtcdMember) start() error {
	cmd := exec.Command("etcd", m.args...)
	cmd.Stdout, cmd.Stderr = m.log, m.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd %s: %w", m.Name, err)
	}
	m.mu.Lock()
	m.cmd = cmd
	m.mu.Unlock()
	return nil
}

// Kill stops the member at once (SIGKILL; a frozen member too) and
// reaps it. A killed member stays down until Restart.
func (m *EtcdMember) Kill() {
	m.mu.Lock()
	cmd := m.cmd
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// Stop freezes the member (SIGSTOP): its sockets stay open but it
// answers nothing, as a hung host would. Cont resumes it.
func (m *EtcdMember) Stop() error { return m.signal(syscall.SIGSTOP) }

// Cont resumes a member frozen by Stop (SIGCONT).
func (m *EtcdMember) Cont() error { return m.signal(syscall.SIGCONT) }

func (m *EtcdMember) signal(sig syscall.Signal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return fmt.Errorf("etcd %s is not running", m.Name)
	}
	return m.cmd.Process.Signal(sig)
}

// Restart kills the member if it runs and starts it again on the same
// data directory and ports; it does not wait for it to be healthy.
func (m *EtcdMember) Restart() error {
	m.Kill()
	return m.start()
}

// WaitHealthy polls the member's /health until it answers 200 (it has a
// leader) or d passes.
func (m *EtcdMember) WaitHealthy(d time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	return waitEtcdHealthy(hc, m.Endpoint, filepath.Join(m.DataDir, "etcd.log"), d)
}
