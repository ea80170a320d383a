package testenv

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// SlowWriter paces a response: each Write goes out in Chunk-byte pieces,
// flushed, with Delay after each, so a test can act (kill a daemon, cut a
// connection) mid-download. It stops when Ctx ends.
type SlowWriter struct {
	http.ResponseWriter
	Ctx   context.Context
	Chunk int           // 0 = 32 KiB
	Delay time.Duration // after each chunk
}

func (s *SlowWriter) Write(p []byte) (int, error) {
	chunk := s.Chunk
	if chunk <= 0 {
		chunk = 32 << 10
	}
	total := 0
	for len(p) > 0 {
		n := min(len(p), chunk)
		m, err := s.ResponseWriter.Write(p[:n])
		total += m
		if err != nil {
			return total, err
		}
		if f, ok := s.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		select {
		case <-time.After(s.Delay):
		case <-s.Ctx.Done():
			return total, s.Ctx.Err()
		}
		p = p[n:]
	}
	return total, nil
}

// PostRecorder is an HTTP server on 127.0.0.1 that records each request
// (method, Content-Type, body) and answers with Code.
type PostRecorder struct {
	*httptest.Server
	Code int

	mu       sync.Mutex // guards requests
	requests []Recorded
}

// Recorded is one request a PostRecorder received.
type Recorded struct {
	Method, ContentType string
	Body                []byte
}

// NewPostRecorder starts a PostRecorder answering code; it stops in
// t.Cleanup.
func NewPostRecorder(t testing.TB, code int) *PostRecorder {
	r := &PostRecorder{Code: code}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.requests = append(r.requests, Recorded{Method: req.Method, ContentType: req.Header.Get("Content-Type"), Body: b})
		r.mu.Unlock()
		w.WriteHeader(r.Code)
	}))
	t.Cleanup(r.Close)
	return r
}

// Requests returns what was received so far.
func (r *PostRecorder) Requests() []Recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}
