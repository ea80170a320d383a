package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

func TestStartEtcdTLS(t *testing.T) {
	e := StartEtcdTLS(t)
	u, err := url.Parse(e.Endpoint)
	if err != nil || u.Scheme != "https" || u.Hostname() != "127.0.0.1" {
		t.Fatalf("endpoint %q (%v), want https://127.0.0.1:PORT", e.Endpoint, err)
	}
	for _, f := range []string{e.CAFile, e.CertFile, e.KeyFile} {
		if b, err := os.ReadFile(f); err != nil || !strings.HasPrefix(string(b), "-----BEGIN ") {
			t.Fatalf("%q: not a PEM file (%v)", f, err)
		}
	}

	// etcdctl with the generated CA and client certificate.
	e.Etcdctl(t, "put", "testenv/k", "v")
	if got := e.Etcdctl(t, "get", "--print-value-only", "testenv/k"); got != "v\n" {
		t.Fatalf("etcdctl get = %q", got)
	}

	// The server certificate verifies for 127.0.0.1 against CAFile alone
	// (the handshake fails on the client side otherwise).
	caPEM, _ := os.ReadFile(e.CAFile)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("server certificate does not verify against CAFile for 127.0.0.1: %v", err)
	}
	conn.Close()

	// Without a client certificate the server refuses the request.
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer noCert.CloseIdleConnections()
	if resp, err := noCert.Get(e.Endpoint + "/health"); err == nil {
		resp.Body.Close()
		t.Fatalf("GET /health without a client certificate: %s, want a TLS error", resp.Status)
	}
	// With one it is answered.
	ok := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: e.clientTLS(t)}}
	defer ok.CloseIdleConnections()
	resp, err := ok.Get(e.Endpoint + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /health with the client certificate: %s", resp.Status)
	}
}

func TestStartEtcdPlain(t *testing.T) {
	e := StartEtcd(t)
	if !strings.HasPrefix(e.Endpoint, "http://127.0.0.1:") || e.CA != nil || e.CAFile != "" || e.CertFile != "" {
		t.Fatalf("plain etcd: %+v", e)
	}
	e.Etcdctl(t, "put", "testenv/k", "plain")
	if got := e.Etcdctl(t, "get", "--print-value-only", "testenv/k"); got != "plain\n" {
		t.Fatalf("etcdctl get = %q", got)
	}
}
