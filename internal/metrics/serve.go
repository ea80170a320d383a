package metrics

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// ErrNotLoopback is returned by Listen for an address that is reachable
// from other machines when remote access was not allowed.
var ErrNotLoopback = errors.New("metrics: listen address is not loopback")

// Listen opens a TCP listener for the metrics endpoint. Unless allowRemote
// is set, addr's host must be a loopback IP literal or "localhost"; an empty
// host (":9100", all interfaces) is refused with ErrNotLoopback.
func Listen(addr string, allowRemote bool) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen address %q: %w", addr, err)
	}
	if !allowRemote && !isLoopback(host) {
		return nil, fmt.Errorf("%w: %q (allow remote access explicitly to listen there)", ErrNotLoopback, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return ln, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ListenUnix opens a Unix socket listener at path for the metrics
// endpoint, as Zincati's metrics.promsock: its directory is made (0755)
// if missing, a stale socket left by a killed process is replaced, and
// anything else at path is refused. The socket is mode 0666: the metrics
// hold nothing secret, and a local scraper runs as any user; restrict it
// with the directory's mode. Closing the listener removes the socket.
func ListenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("metrics: %s exists and is not a socket; not replacing it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("metrics: remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return ln, nil
}

// Serve serves /metrics on ln until ctx is done, then shuts the server
// down and returns nil; an error means the server stopped serving. It
// closes ln. The daemon serves its TCP address and its Unix socket so.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener) error {
	return serve(ctx, ln, m.Handler())
}

func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	<-errc
	if err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	return nil
}

// ListenAndServe is Listen followed by Serve.
func (m *Metrics) ListenAndServe(ctx context.Context, addr string, allowRemote bool) error {
	ln, err := Listen(addr, allowRemote)
	if err != nil {
		return err
	}
	return m.Serve(ctx, ln)
}
