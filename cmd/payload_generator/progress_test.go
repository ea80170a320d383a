package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestProgressLine: bytes, percentage, rate and ETA on an injected clock;
// lines at most every interval; a final line with the elapsed time.
func TestProgressLine(t *testing.T) {
	now := time.Unix(1000, 0)
	var b bytes.Buffer
	p := newProgress(&b, 4<<20, func() time.Time { return now })
	now = now.Add(time.Second)
	p.add(1 << 20) // first bytes: printed
	now = now.Add(100 * time.Millisecond)
	p.add(1 << 20) // within the interval: not printed
	now = now.Add(900 * time.Millisecond)
	p.add(1 << 20)
	now = now.Add(time.Second)
	p.add(1 << 20)
	p.finish()
	want := "\r1.0 MiB / 4.0 MiB (25%), 1.0 MiB/s, ETA 3s\x1b[K" +
		"\r3.0 MiB / 4.0 MiB (75%), 1.5 MiB/s, ETA 1s\x1b[K" +
		"\r4.0 MiB / 4.0 MiB (100%), 1.3 MiB/s, ETA 0s\x1b[K" +
		"\r4.0 MiB / 4.0 MiB (100%), 1.3 MiB/s, 3s\x1b[K\n"
	if b.String() != want {
		t.Errorf("progress output\n got %q\nwant %q", b.String(), want)
	}
	var quiet bytes.Buffer
	newProgress(&quiet, 10, time.Now).finish()
	if quiet.Len() != 0 {
		t.Errorf("no bytes, yet printed %q", quiet.String())
	}
}

// openPTY returns a pseudo-terminal's master and slave.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("SKIP: no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestGenerateProgress: generate prints progress to stderr on a terminal
// (a real pty) and nothing when stderr is a pipe.
func TestGenerateProgress(t *testing.T) {
	dir := t.TempDir()
	img, _ := image(t, dir, "new.img", 3)
	master, slave := openPTY(t)
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(master) // ends with EIO once the slave is closed
		got <- string(b)
	}()
	var stdout bytes.Buffer
	if code := Main(context.Background(), []string{"generate", "--new", img, "--unsigned", "-o", filepath.Join(dir, "tty.bin")},
		nil, &stdout, slave); code != 0 {
		t.Fatalf("generate on a terminal: exit %d", code)
	}
	slave.Close()
	tty := <-got
	if !strings.Contains(tty, "1.5 MiB / 1.5 MiB (100%)") || !strings.HasSuffix(strings.TrimRight(tty, "\r\n"), "\x1b[K") {
		t.Errorf("terminal got %q, want a progress line ending at 1.5 MiB / 1.5 MiB (100%%)", tty)
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if code := Main(context.Background(), []string{"generate", "--new", img, "--unsigned", "-o", filepath.Join(dir, "pipe.bin")},
		nil, &stdout, w); code != 0 {
		t.Fatalf("generate into a pipe: exit %d", code)
	}
	w.Close()
	if b, _ := io.ReadAll(r); len(b) != 0 {
		t.Errorf("stderr is a pipe, yet generate wrote %q", b)
	}
}
