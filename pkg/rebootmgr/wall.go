package rebootmgr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// utmp record layout (glibc, Linux x86_64/arm64; little-endian):
//
//	offset size field
//	0      2    ut_type (short; 7 = USER_PROCESS), 2 bytes padding
//	4      4    ut_pid
//	8      32   ut_line (tty name relative to /dev, NUL-padded)
//	40     4    ut_id
//	44     32   ut_user
//	76     256  ut_host
//	332    52   exit status, session, time, address, reserved
const (
	utmpRecordSize  = 384
	utmpUserProcess = 7
	utmpLineOff     = 8
	utmpLineLen     = 32
	utmpUserOff     = 44
	utmpUserLen     = 32
)

// DefaultUtmp is the login records file.
const DefaultUtmp = "/run/utmp"

// Session is a logged-in user's tty from utmp.
type Session struct {
	User, Line string
}

// ReadUtmp returns the USER_PROCESS entries of a utmp file. A missing
// file means nobody is logged in.
func ReadUtmp(path string) ([]Session, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("rebootmgr: %w", err)
	}
	var out []Session
	for off := 0; off+utmpRecordSize <= len(b); off += utmpRecordSize {
		r := b[off : off+utmpRecordSize]
		if int16(binary.LittleEndian.Uint16(r)) != utmpUserProcess {
			continue
		}
		s := Session{
			Line: cstring(r[utmpLineOff : utmpLineOff+utmpLineLen]),
			User: cstring(r[utmpUserOff : utmpUserOff+utmpUserLen]),
		}
		if s.Line != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// Wall writes a message to every logged-in user's tty, as locksmithd does
// before rebooting.
type Wall struct {
	Utmp   string // default DefaultUtmp
	DevDir string // default /dev
}

// RebootMessage is the warning for a reboot after delay:
// "System reboot in 5 minutes!" for 5m.
func RebootMessage(delay time.Duration) string {
	if delay > 0 && delay%time.Minute == 0 {
		n := int(delay / time.Minute)
		if n == 1 {
			return "System reboot in 1 minute!"
		}
		return fmt.Sprintf("System reboot in %d minutes!", n)
	}
	return fmt.Sprintf("System reboot in %v!", delay)
}

// Warn writes msg to each session's tty and returns how many were
// written. Failing ttys (gone, hung up) are skipped.
func (w Wall) Warn(msg string) (int, error) {
	utmp, dev := w.Utmp, w.DevDir
	if utmp == "" {
		utmp = DefaultUtmp
	}
	if dev == "" {
		dev = "/dev"
	}
	sessions, err := ReadUtmp(utmp)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range sessions {
		if strings.Contains(s.Line, "..") {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dev, s.Line), os.O_WRONLY|os.O_APPEND|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0)
		if err != nil {
			continue
		}
		_, err = fmt.Fprintf(f, "\r\nBroadcast message from update_engine_reboot_manager:\r\n\r\n%s\r\n\r\n", msg)
		f.Close()
		if err == nil {
			n++
		}
	}
	return n, nil
}
