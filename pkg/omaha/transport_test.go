package omaha

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

type testPKI struct {
	dir                   string
	caFile                string
	serverCert            tls.Certificate
	clientCert, clientKey string
	pool                  *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, ip bool) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		}
		if ip {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	writePEM := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pki := &testPKI{dir: dir, caFile: writePEM("ca.pem", "CERTIFICATE", caDER), pool: x509.NewCertPool()}
	pki.pool.AddCert(ca)
	sDER, sKey := issue(2, x509.ExtKeyUsageServerAuth, true)
	pki.serverCert = tls.Certificate{Certificate: [][]byte{sDER}, PrivateKey: sKey}
	cDER, cKey := issue(3, x509.ExtKeyUsageClientAuth, false)
	kb, _ := x509.MarshalECPrivateKey(cKey)
	pki.clientCert = writePEM("client.pem", "CERTIFICATE", cDER)
	pki.clientKey = writePEM("client.key", "EC PRIVATE KEY", kb)
	return pki
}

func TestMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, okUpdate)
	}))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{pki.serverCert}, ClientCAs: pki.pool, ClientAuth: tls.RequireAndVerifyClientCert}
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected
	s.StartTLS()
	t.Cleanup(s.Close)

	tests := []struct {
		name    string
		opts    TransportOptions
		wantErr bool
	}{
		{"CA and client certificate", TransportOptions{CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKey}, false},
		{"no client certificate", TransportOptions{CAFile: pki.caFile}, true},
		{"system roots do not know the CA", TransportOptions{CertFile: pki.clientCert, KeyFile: pki.clientKey}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc, err := NewHTTPClient(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer hc.CloseIdleConnections()
			c := &Client{Server: s.URL + "/v1/update/", HTTP: newTrackingDoer(t, hc)}
			_, err = c.Check(testCtx(t), specParams())
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func TestNewHTTPClientBadFiles(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not pem"), 0o600)
	tests := []struct {
		name string
		opts TransportOptions
	}{
		{"missing CA", TransportOptions{CAFile: filepath.Join(dir, "nope")}},
		{"CA without PEM", TransportOptions{CAFile: junk}},
		{"cert without key", TransportOptions{CertFile: junk}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewHTTPClient(tt.opts); err == nil {
				t.Error("no error")
			}
		})
	}
}

// Requests go through the configured proxy (absolute-form request line).
func TestProxy(t *testing.T) {
	var proxied atomic.Int64
	proxy := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Host == "omaha.invalid" {
			proxied.Add(1)
			io.WriteString(w, okUpdate)
			return
		}
		http.Error(w, "not a proxy request", 400)
	})
	pu, _ := url.Parse(proxy.URL)
	hc, err := NewHTTPClient(TransportOptions{Proxy: http.ProxyURL(pu)})
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	c := &Client{Server: "http://omaha.invalid/v1/update/", HTTP: newTrackingDoer(t, hc)}
	if _, err := c.Check(testCtx(t), specParams()); err != nil {
		t.Fatal(err)
	}
	if proxied.Load() != 1 {
		t.Errorf("proxied %d requests", proxied.Load())
	}
}

func TestCallerCancel(t *testing.T) {
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, okUpdate) })
	c := newTestClient(t, s.URL)
	ctx, cancel := testCtxCancel(t)
	cancel()
	if _, err := c.Check(ctx, specParams()); !errors.Is(err, ctx.Err()) {
		t.Fatalf("err = %v", err)
	}
	if _, err := c.OpenPayload(ctx, s.URL, 0); err == nil {
		t.Fatal("download with a canceled ctx succeeded")
	}
}
