package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Swtpm is a software TPM 2.0 (Debian's swtpm) in socket mode on
// 127.0.0.1. Its server port speaks raw TPM command bytes (a command in, a
// response out, one client at a time); its control port speaks swtpm's
// control protocol (swtpm_ioctl --tcp). NV state lives in StateDir and
// survives Restart; PCRs do not (every start is a TPM2_Startup(CLEAR)).
type Swtpm struct {
	Addr     string // host:port of the TPM command server
	CtrlAddr string // host:port of the control channel
	StateDir string // --tpmstate dir
	// TCTI is the tpm2-tools TCTI string for this TPM, for
	// TPM2TOOLS_TCTI or -T: "swtpm:host=127.0.0.1,port=P".
	TCTI string

	mu     sync.Mutex // guards proc and exited
	proc   *os.Process
	exited chan error // receives the result of the running Wait
}

// StartSwtpm starts swtpm for t on free ports with its state in stateDir
// (a fresh t.TempDir() when empty) and waits until it accepts commands. It
// is killed in t.Cleanup. The test is skipped when swtpm is not installed.
func StartSwtpm(t testing.TB, stateDir string) *Swtpm {
	t.Helper()
	RequireTool(t, "swtpm")
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	s := &Swtpm{StateDir: stateDir}
	t.Cleanup(func() { s.Kill(t) })
	var lastErr error
	for range 5 { // a free port can be taken between probe and bind: retry
		port, err := freePortPair()
		if err != nil {
			t.Fatalf("swtpm: find free ports: %v", err)
		}
		if lastErr = s.start(port); lastErr == nil {
			return s
		}
	}
	t.Fatalf("swtpm: %v", lastErr)
	return nil
}

// Stop ends swtpm with SIGTERM and waits for it. The state directory stays,
// so Restart can bring the same TPM back.
func (s *Swtpm) Stop(t testing.TB) {
	t.Helper()
	s.signal(syscall.SIGTERM)
}

// Kill ends swtpm with SIGKILL at once, as a crash would, and waits for it.
func (s *Swtpm) Kill(t testing.TB) {
	t.Helper()
	s.signal(syscall.SIGKILL)
}

// Restart stops swtpm if it runs and starts it again on the same ports with
// the same state directory.
func (s *Swtpm) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	_, p, _ := net.SplitHostPort(s.Addr)
	port, _ := strconv.Atoi(p)
	var err error
	for range 3 { // the old listener may linger for a moment
		if err = s.start(port); err == nil {
			return
		}
	}
	t.Fatalf("swtpm restart: %v", err)
}

func (s *Swtpm) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.Signal(sig)
	<-s.exited
	s.proc, s.exited = nil, nil
}

func (s *Swtpm) start(port int) error {
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.CtrlAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1))
	s.TCTI = fmt.Sprintf("swtpm:host=127.0.0.1,port=%d", port)
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
		"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
		"--flags", "not-need-init,startup-clear",
		"--tpmstate", "dir="+s.StateDir)
	out := new(lockedBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("exited before accepting connections: %v: %s", err, out)
		case <-deadline:
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("not accepting connections on %s within 10s: %s", s.CtrlAddr, out)
		case <-tick.C:
		}
		// swtpm opens the control port after the server port.
		c, err := net.Dial("tcp", s.CtrlAddr)
		if err != nil {
			continue
		}
		_ = c.Close()
		s.mu.Lock()
		s.proc, s.exited = cmd.Process, exited
		s.mu.Unlock()
		return nil
	}
}

// freePortPair returns a port P such that P and P+1 were both free.
func freePortPair() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		_ = l.Close()
		if err != nil {
			continue
		}
		_ = l2.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no two adjacent free ports on 127.0.0.1")
}

// lockedBuffer collects swtpm's output; the exec copier goroutine writes
// while the test may read. mu guards b.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
