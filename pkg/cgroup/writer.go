package cgroup

import (
	"io"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// thread is the Limiter's writer thread. It stays locked to its OS thread
// for its whole life and returns without unlocking, so the Go runtime
// destroys the thread instead of reusing it elsewhere.
func (l *Limiter) thread(started chan<- error) {
	runtime.LockOSThread()
	defer close(l.done)
	tid := unix.Gettid()
	if err := l.be.enter(tid); err != nil {
		started <- err
		return
	}
	started <- nil
	for {
		select {
		case f := <-l.reqs:
			f()
		case <-l.quit:
			l.leaveErr = l.be.leave(tid)
			return
		}
	}
}

// run executes f on the writer thread and waits for it.
func (l *Limiter) run(f func()) error {
	if l == nil {
		f()
		return nil
	}
	ran := make(chan struct{})
	select {
	case l.reqs <- func() { f(); close(ran) }:
	case <-l.quit:
		return ErrClosed
	}
	<-ran
	return nil
}

// Writer is the io.WriterAt returned by Limiter.WriterAt. Its methods may
// be called from any goroutine; WriteAt and Sync run one at a time on the
// Limiter's thread, Close on the caller's.
type Writer struct {
	l *Limiter
	w io.WriterAt
}

// WriterAt returns a writer whose WriteAt and Sync run on the Limiter's
// thread inside the cgroup. For the limit to hold on cgroup v1,
// w must be a file opened with O_DIRECT (see the package doc). On a nil
// Limiter the writer writes directly.
func (l *Limiter) WriterAt(w io.WriterAt) *Writer {
	return &Writer{l: l, w: w}
}

// WriteAt writes p at off through the underlying writer on the limited
// thread.
func (w *Writer) WriteAt(p []byte, off int64) (n int, err error) {
	start := time.Now()
	if rerr := w.l.run(func() { n, err = w.w.WriteAt(p, off) }); rerr != nil {
		return 0, rerr
	}
	if w.l != nil {
		end := time.Now()
		w.l.first.CompareAndSwap(0, start.UnixNano())
		w.l.last.Store(end.UnixNano())
		w.l.busy.Add(int64(end.Sub(start)))
		w.l.bytes.Add(int64(n))
		w.l.writes.Add(1)
	}
	return n, err
}

// Sync calls the underlying writer's Sync() error method, if it has one.
func (w *Writer) Sync() (err error) {
	s, ok := w.w.(interface{ Sync() error })
	if !ok {
		return nil
	}
	if rerr := w.l.run(func() { err = s.Sync() }); rerr != nil {
		return rerr
	}
	return err
}

// Close closes the underlying writer if it is an io.Closer. It does not
// close the Limiter.
func (w *Writer) Close() error {
	c, ok := w.w.(io.Closer)
	if !ok {
		return nil
	}
	return c.Close()
}

// NiceThread locks the calling goroutine to its OS thread for the rest of
// the goroutine's life and sets that thread's nice value (setpriority
// PRIO_PROCESS on the TID; 0..19, higher is lower priority). Call it first
// in each payload-decoding goroutine. The goroutine must not call
// runtime.UnlockOSThread: when it returns, the runtime destroys the
// thread, so the lowered priority never reaches other goroutines.
func NiceThread(nice int) error {
	if nice < -20 || nice > 19 {
		return ErrInvalidConfig
	}
	runtime.LockOSThread()
	return unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), nice)
}
