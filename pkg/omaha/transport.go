package omaha

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// Doer sends one HTTP request; *http.Client satisfies it. It is the seam
// for tests and for callers with their own transport.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// TransportOptions configure NewHTTPClient.
type TransportOptions struct {
	// ConnectTimeout bounds TCP connect and the TLS handshake (0 = 30 s).
	ConnectTimeout time.Duration
	// ReadTimeout bounds the wait for response headers (0 = 60 s). Body
	// reads are bounded by Client.ReadTimeout.
	ReadTimeout time.Duration
	// CAFile, if set, is a PEM bundle that replaces the system roots.
	CAFile string
	// CertFile and KeyFile, if set, are a PEM client certificate and key
	// presented to servers that ask (mTLS).
	CertFile, KeyFile string
	// Proxy picks the proxy for a request; nil = http.ProxyFromEnvironment
	// (HTTPS_PROXY, HTTP_PROXY, NO_PROXY; never for localhost).
	Proxy func(*http.Request) (*url.URL, error)
}

// NewHTTPClient returns an *http.Client for Omaha and payload requests:
// proxies from the environment unless o.Proxy says otherwise, the
// timeouts and TLS material of o, and at most 10 redirects. The returned
// client has no overall timeout; every call takes a ctx.
func NewHTTPClient(o TransportOptions) (*http.Client, error) {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 30 * time.Second
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 60 * time.Second
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("omaha: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("omaha: CA file %s: no PEM certificate", o.CAFile)
		}
		tc.RootCAs = pool
	}
	if o.CertFile != "" || o.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("omaha: client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	proxy := o.Proxy
	if proxy == nil {
		proxy = http.ProxyFromEnvironment
	}
	d := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 proxy,
		DialContext:           d.DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   o.ConnectTimeout,
		ResponseHeaderTimeout: o.ReadTimeout,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          4,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{Transport: tr}, nil
}
