package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
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

// Serve serves /metrics on ln until ctx is done, then shuts the server
// down and returns nil. It closes ln.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
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
