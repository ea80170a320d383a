package rebootmgr

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// etcdProbe returns a check that connects to each of c's endpoints as the
// etcd client would (TCP, then TLS with the same settings) and asks for
// /version. It returns nil once one endpoint answers, else why none did:
// the reason the etcd client hides behind "context deadline exceeded",
// such as "x509: certificate signed by unknown authority" or "remote
// error: tls: bad certificate".
func etcdProbe(c Config) func(context.Context) error {
	return func(ctx context.Context) error {
		tlsConf, err := c.EtcdTLS()
		if err != nil {
			return err
		}
		var errs []error
		for _, ep := range c.Endpoints {
			err := probeEndpoint(ctx, ep, tlsConf)
			if err == nil {
				return nil
			}
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
		}
		return errors.Join(errs...)
	}
}

func probeEndpoint(ctx context.Context, endpoint string, tlsConf *tls.Config) error {
	if !strings.Contains(endpoint, "://") {
		// host:port, as the etcd client takes it: TLS when configured.
		scheme := "http://"
		if tlsConf != nil {
			scheme = "https://"
		}
		endpoint = scheme + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var conn net.Conn
	if u.Scheme == "https" {
		conf := &tls.Config{MinVersion: tls.VersionTLS12}
		if tlsConf != nil {
			conf = tlsConf.Clone()
		}
		conf.ServerName = u.Hostname()
		conn, err = (&tls.Dialer{Config: conf}).DialContext(ctx, "tcp", u.Host)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", u.Host)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// With TLS 1.3 a refused client certificate shows only on the first
	// read, so ask for something.
	if _, err := fmt.Fprintf(conn, "GET /version HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", u.Host); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "HTTP/1.") {
		return fmt.Errorf("not an etcd client URL: it answered %q", strings.TrimSpace(line))
	}
	return nil
}
