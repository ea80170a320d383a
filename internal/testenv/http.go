package testenv

import (
	"context"
	"net/http"
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
