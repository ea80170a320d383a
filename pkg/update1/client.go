package update1

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/godbus/dbus/v5"
)

// Client errors.
var (
	// ErrNoBus means the bus itself could not be reached.
	ErrNoBus = errors.New("update1: cannot connect to the D-Bus bus")
	// ErrNotRunning means nobody owns com.coreos.update1 on the bus.
	ErrNotRunning = errors.New("update1: update_engine is not running (nobody owns " + Name + ")")
	// ErrFailed is a call the daemon refused (ErrorFailed); the wrapping
	// error carries the daemon's message.
	ErrFailed = errors.New("update1: the daemon refused the call")
	// ErrAccessDenied is a call the bus or daemon did not allow.
	ErrAccessDenied = errors.New("update1: access denied")
)

// Client talks to a running update_engine over D-Bus. Set Queue and
// Logf before Watch.
type Client struct {
	conn  *dbus.Conn
	owned bool // Close closes conn
	// Queue is how many statuses Watch keeps for a reader that lags,
	// dropping the oldest first. 0 keeps only the latest (the reboot
	// manager acts on the current status, never a stale one);
	// update_engine_client, printing every signal, keeps more.
	Queue int
	// Logf, if set, reports the signals Watch ignores.
	Logf func(format string, args ...any)
}

// SystemBusAddress returns the system bus address: DBUS_SYSTEM_BUS_ADDRESS
// when set, else the well-known socket.
func SystemBusAddress() string {
	if a := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"); a != "" {
		return a
	}
	return "unix:path=/var/run/dbus/system_bus_socket"
}

// Dial connects to the bus at addr ("" = the system bus) with a private
// connection (EXTERNAL auth, Hello), as locksmith does. It does not check
// that the daemon runs; the first call does. Errors wrap ErrNoBus.
func Dial(ctx context.Context, addr string) (*Client, error) {
	if addr == "" {
		addr = SystemBusAddress()
	}
	conn, err := dbus.Connect(addr, dbus.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrNoBus, addr, err)
	}
	return &Client{conn: conn, owned: true}, nil
}

// NewClient returns a client on conn, which the caller keeps and closes.
func NewClient(conn *dbus.Conn) *Client { return &Client{conn: conn} }

// Close closes the connection Dial opened (not one given to NewClient).
func (c *Client) Close() error {
	if !c.owned {
		return nil
	}
	return c.conn.Close()
}

// Conn is the client's connection.
func (c *Client) Conn() *dbus.Conn { return c.conn }

// call invokes iface.method on dest's object at path and maps the
// well-known D-Bus errors onto this package's sentinels.
func (c *Client) call(ctx context.Context, dest, path, iface, method string, args ...any) *dbus.Call {
	call := c.conn.Object(dest, dbus.ObjectPath(path)).CallWithContext(ctx, iface+"."+method, 0, args...)
	call.Err = mapErr(method, call.Err)
	return call
}

func mapErr(method string, err error) error {
	if err == nil {
		return nil
	}
	var de dbus.Error
	if errors.As(err, &de) {
		msg := de.Error()
		switch de.Name {
		case "org.freedesktop.DBus.Error.ServiceUnknown", errNameHasNoOwner:
			return fmt.Errorf("%s: %w", method, ErrNotRunning)
		case ErrorFailed:
			return fmt.Errorf("%s: %w: %s", method, ErrFailed, msg)
		case ErrorAccessDenied, "org.freedesktop.DBus.Error.AccessDenied":
			return fmt.Errorf("%s: %w: %s", method, ErrAccessDenied, msg)
		}
		return fmt.Errorf("%s: %s: %s", method, de.Name, msg)
	}
	return fmt.Errorf("%s: %w", method, err)
}

// GetStatus calls com.coreos.update1.Manager.GetStatus.
func (c *Client) GetStatus(ctx context.Context) (Status, error) {
	return c.getStatus(ctx, Name)
}

// getStatus calls GetStatus on dest, a bus name (Watch asks the owner's
// unique name, so that a new owner cannot answer for the old one).
func (c *Client) getStatus(ctx context.Context, dest string) (Status, error) {
	call := c.call(ctx, dest, Path, Interface, MethodGetStatus)
	if call.Err != nil && dest != Name {
		return Status{}, fmt.Errorf("update1: asking %s: %w", dest, call.Err)
	}
	if call.Err != nil {
		return Status{}, call.Err
	}
	return ParseStatus(call.Body)
}

// AttemptUpdate calls com.coreos.update1.Manager.AttemptUpdate.
func (c *Client) AttemptUpdate(ctx context.Context) error {
	return c.call(ctx, Name, Path, Interface, MethodAttemptUpdate).Err
}

// AttemptUpdateWith calls the ChromeOS AttemptUpdate(s app_version, s
// omaha_url) (org.chromium.UpdateEngineInterface, served by the same
// daemon): an interactive check that asks for appVersion and uses
// omahaURL instead of the configured server, when the daemon allows it.
func (c *Client) AttemptUpdateWith(ctx context.Context, appVersion, omahaURL string) error {
	return c.call(ctx, Name, ChromeOSPath, ChromeOSInterface, MethodAttemptUpdate, appVersion, omahaURL).Err
}

// ResetStatus calls com.coreos.update1.Manager.ResetStatus.
func (c *Client) ResetStatus(ctx context.Context) error {
	return c.call(ctx, Name, Path, Interface, MethodResetStatus).Err
}

// Detail calls GetStatusJSON on our own interface.
func (c *Client) Detail(ctx context.Context) (Detail, error) {
	s, err := c.StatusJSON(ctx)
	if err != nil {
		return Detail{}, err
	}
	var d Detail
	if err := json.Unmarshal([]byte(s), &d); err != nil {
		return Detail{}, fmt.Errorf("GetStatusJSON: %w", err)
	}
	return d, nil
}

// StatusJSON returns GetStatusJSON's string unchanged.
func (c *Client) StatusJSON(ctx context.Context) (string, error) {
	var s string
	err := c.call(ctx, Name, Path, OwnInterface, "GetStatusJSON").Store(&s)
	return s, err
}

// AttemptRollback asks the daemon to boot the other slot next.
func (c *Client) AttemptRollback(ctx context.Context, powerwash bool) error {
	return c.call(ctx, Name, Path, OwnInterface, "AttemptRollback", powerwash).Err
}

// SetChannel sets the Omaha track.
func (c *Client) SetChannel(ctx context.Context, channel string) error {
	return c.call(ctx, Name, Path, OwnInterface, "SetChannel", channel).Err
}
