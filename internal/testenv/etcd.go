package testenv

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Etcd is a running single-member etcd server started by StartEtcd or
// StartEtcdTLS.
type Etcd struct {
	// Endpoint is the client URL: http://127.0.0.1:PORT, or
	// https://127.0.0.1:PORT for StartEtcdTLS.
	Endpoint string
	// DataDir is the server's temporary directory (data and etcd.log).
	DataDir string

	// TLS only (StartEtcdTLS; empty otherwise). CA signed the server and
	// client certificates and is the server's only trusted client CA;
	// tests can issue more client certificates from it.
	CA *CA
	// CAFile is CA's certificate (PEM), the trust root clients need.
	CAFile string
	// CertFile and KeyFile are a client certificate and its key (PEM)
	// that the server accepts.
	CertFile, KeyFile string

	cmd *exec.Cmd
}

// Kill stops the server at once (SIGKILL), as a crash would. Cleanup
// tolerates a killed server.
func (e *Etcd) Kill() {
	if e.cmd.Process != nil {
		_ = e.cmd.Process.Kill()
	}
}

// Etcdctl runs Debian's etcdctl (v3 API) against e, with e's CA and
// client certificate when e serves TLS, and returns its combined output.
func (e *Etcd) Etcdctl(t testing.TB, args ...string) string {
	t.Helper()
	RequireTool(t, "etcdctl")
	flags := []string{"--endpoints=" + e.Endpoint}
	if e.CAFile != "" {
		flags = append(flags, "--cacert="+e.CAFile, "--cert="+e.CertFile, "--key="+e.KeyFile)
	}
	cmd := exec.Command("etcdctl", append(flags, args...)...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("etcdctl %v: %v: %s", args, err, out)
	}
	return string(out)
}

// EtcdctlV2 runs etcdctl on etcd's v2 keys API (ETCDCTL_API=2, as
// locksmith's etcd client speaks it) against e, started by StartEtcdV2,
// and returns its combined output and error (v2 etcdctl exits non-zero
// for a missing key, or a failed compare-and-swap).
func (e *Etcd) EtcdctlV2(t testing.TB, args ...string) (string, error) {
	t.Helper()
	RequireTool(t, "etcdctl")
	cmd := exec.Command("etcdctl", append([]string{"--endpoints=" + e.Endpoint}, args...)...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=2")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// StartEtcdV2 is StartEtcd with the v2 API enabled (--enable-v2, etcd
// 3.4 and 3.5; removed in 3.6): the store locksmithd and locksmithctl use.
// It skips t when the installed etcd has no v2 API.
func StartEtcdV2(t testing.TB) *Etcd {
	t.Helper()
	requireV2(t)
	return startEtcd(t, etcdOptions{v2: true})
}

// StartEtcdV2TLS is StartEtcdTLS with the v2 API enabled.
func StartEtcdV2TLS(t testing.TB) *Etcd {
	t.Helper()
	requireV2(t)
	return startEtcd(t, etcdOptions{v2: true, tls: true})
}

func requireV2(t testing.TB) {
	t.Helper()
	RequireTool(t, "etcd")
	if out, _ := exec.Command("etcd", "--help").CombinedOutput(); !bytes.Contains(out, []byte("--enable-v2")) {
		t.Skip("skipping: the installed etcd has no --enable-v2 (v2 API removed in etcd 3.6)")
	}
}

// StartEtcd starts Debian's etcd on two free 127.0.0.1 ports with a
// temporary data directory, waits until it answers /health, and stops it
// (and removes the data) in t.Cleanup. It skips t when etcd is missing.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	return startEtcd(t, etcdOptions{})
}

// StartEtcdTLS is StartEtcd with the client URL on https and client
// certificate authentication (--client-cert-auth): it creates a throwaway
// CA, a server certificate for 127.0.0.1 and a client certificate, all in
// temporary directories, and returns their files in the Etcd. Clients
// without a certificate from that CA are refused. The peer URL stays
// plain http on 127.0.0.1.
func StartEtcdTLS(t testing.TB) *Etcd {
	t.Helper()
	return startEtcd(t, etcdOptions{tls: true})
}

// etcdOptions select how startEtcd runs the server.
type etcdOptions struct {
	tls bool // https client URL with --client-cert-auth
	v2  bool // --enable-v2
}

func startEtcd(t testing.TB, opt etcdOptions) *Etcd {
	t.Helper()
	RequireTool(t, "etcd")
	dir := t.TempDir()
	client, peer := freePort(t), freePort(t)
	scheme := "http"
	if opt.tls {
		scheme = "https"
	}
	clientURL := fmt.Sprintf("%s://127.0.0.1:%d", scheme, client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	e := &Etcd{Endpoint: clientURL, DataDir: dir}
	args := []string{
		"--name=test",
		"--data-dir=" + filepath.Join(dir, "data"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=test=" + peerURL,
		"--initial-cluster-state=new",
		"--log-level=error",
	}
	if opt.v2 {
		args = append(args, "--enable-v2=true")
	}
	health := &http.Client{Timeout: 2 * time.Second}
	if opt.tls {
		e.CA = NewCA(t, "etcd test CA")
		e.CAFile = e.CA.CertFile
		serverCert, serverKey := e.CA.ServerCert(t, "etcd-server")
		e.CertFile, e.KeyFile = e.CA.ClientCert(t, "etcd-client")
		args = append(args,
			"--cert-file="+serverCert,
			"--key-file="+serverKey,
			"--trusted-ca-file="+e.CAFile,
			"--client-cert-auth",
		)
		health.Transport = &http.Transport{TLSClientConfig: e.clientTLS(t)}
	}
	defer health.CloseIdleConnections()

	logName := filepath.Join(dir, "etcd.log")
	logf, err := os.Create(logName)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("etcd", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start etcd: %v", err)
	}
	e.cmd = cmd
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logf.Close()
	})
	if err := waitEtcdHealthy(health, clientURL, logName, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	return e
}

// waitEtcdHealthy polls clientURL's /health with hc until it answers 200
// (the member has a leader) or d passes; the error then carries the log.
func waitEtcdHealthy(hc *http.Client, clientURL, logName string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		resp, err := hc.Get(clientURL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/health: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logName)
			return fmt.Errorf("etcd %s did not become healthy within %v: %v\n%s", clientURL, d, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clientTLS is the TLS configuration of a client that e accepts: its CA
// as the only root and its client certificate.
func (e *Etcd) clientTLS(t testing.TB) *tls.Config {
	t.Helper()
	caPEM, err := os.ReadFile(e.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s: no certificate", e.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(e.CertFile, e.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
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
