package antirollback

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// sender carries TPM command bytes to a TPM and its response back.
// go-tpm's transport.TPM has no context; ctxTPM adapts a sender to it for
// the commands of one call.
type sender interface {
	send(ctx context.Context, cmd []byte) ([]byte, error)
	Close() error
}

// ctxTPM is a transport.TPM bound to one call's ctx.
type ctxTPM struct {
	ctx context.Context
	s   sender
}

func (c ctxTPM) Send(cmd []byte) ([]byte, error) { return c.s.send(c.ctx, cmd) }

// deviceSender talks to a TPM character device (/dev/tpmrm0). A device
// read cannot be interrupted, so ctx is only checked before each command.
// mu guards the device: a command and its response must not interleave
// with another's.
type deviceSender struct {
	mu  sync.Mutex
	tpm transport.TPMCloser
}

func (d *deviceSender) send(ctx context.Context, cmd []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tpm.Send(cmd)
}

func (d *deviceSender) Close() error { return d.tpm.Close() }

// maxResponse bounds a TPM response; real ones stay below 4 KiB.
const maxResponse = 1 << 16

// tcpSender speaks raw TPM command bytes over TCP, as swtpm's socket
// server does (`swtpm socket --server type=tcp,port=P`): write the command,
// read a response whose 10-byte header (tag u16, size u32, code u32, big
// endian) gives its total size. It is not the TPM simulator's framed
// protocol (go-tpm's transport/tcp, which adds a TPM_SEND_COMMAND header).
//
// Each command uses its own connection, as tpm2-tss's swtpm TCTI does:
// swtpm serves one client at a time, so holding a connection would lock
// out tpm2-tools, and a restarted swtpm is picked up without reopening.
type tcpSender struct {
	addr string
	mu   sync.Mutex // serializes commands, as on a device
}

func (t *tcpSender) send(ctx context.Context, cmd []byte) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(cmd); err != nil {
		return nil, ctxOr(ctx, err)
	}
	var hdr [10]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return nil, ctxOr(ctx, fmt.Errorf("read response header: %w", err))
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponse {
		return nil, fmt.Errorf("response header claims %d bytes", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr[:])
	if _, err := io.ReadFull(conn, rsp[10:]); err != nil {
		return nil, ctxOr(ctx, fmt.Errorf("read response body (%d bytes): %w", size-10, err))
	}
	return rsp, nil
}

func (t *tcpSender) Close() error { return nil }

// ctxOr prefers ctx's error when ctx ended the I/O.
func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}
