package dbusapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/godbus/dbus/v5"
)

// Client talks to a running update_engine over D-Bus.
type Client struct {
	conn *dbus.Conn
	obj  dbus.BusObject
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
	return &Client{conn: conn, obj: conn.Object(CoreOSName, CoreOSPath)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the client's connection, for watching StatusUpdate with
// pkg/rebootmgr's UpdateEngine.Watch, which believes only the owner of
// com.coreos.update1 (any local user can send the signal).
func (c *Client) Conn() *dbus.Conn { return c.conn }

// call invokes iface.method and maps the well-known D-Bus errors onto this
// package's sentinels.
func (c *Client) call(ctx context.Context, iface, method string, args ...any) *dbus.Call {
	call := c.obj.CallWithContext(ctx, iface+"."+method, 0, args...)
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
		case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner":
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
	var st Status
	err := c.call(ctx, CoreOSInterface, "GetStatus").Store(&st.LastCheckedTime, &st.Progress, &st.CurrentOperation, &st.NewVersion, &st.NewSize)
	return st, err
}

// AttemptUpdate calls com.coreos.update1.Manager.AttemptUpdate.
func (c *Client) AttemptUpdate(ctx context.Context) error {
	return c.call(ctx, CoreOSInterface, "AttemptUpdate").Err
}

// AttemptUpdateWith calls the ChromeOS AttemptUpdate(s app_version, s
// omaha_url) (org.chromium.UpdateEngineInterface, served by the same
// daemon): an interactive check that asks for appVersion and uses
// omahaURL instead of the configured server, when the daemon allows it.
func (c *Client) AttemptUpdateWith(ctx context.Context, appVersion, omahaURL string) error {
	call := c.conn.Object(CoreOSName, ChromeOSPath).CallWithContext(ctx, ChromeOSInterface+".AttemptUpdate", 0, appVersion, omahaURL)
	return mapErr("AttemptUpdate", call.Err)
}

// ResetStatus calls com.coreos.update1.Manager.ResetStatus.
func (c *Client) ResetStatus(ctx context.Context) error {
	return c.call(ctx, CoreOSInterface, "ResetStatus").Err
}

// Detail calls GetStatusJSON on our own interface.
func (c *Client) Detail(ctx context.Context) (Detail, error) {
	var s string
	if err := c.call(ctx, Interface, "GetStatusJSON").Store(&s); err != nil {
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
	err := c.call(ctx, Interface, "GetStatusJSON").Store(&s)
	return s, err
}

// AttemptRollback asks the daemon to boot the other slot next.
func (c *Client) AttemptRollback(ctx context.Context, powerwash bool) error {
	return c.call(ctx, Interface, "AttemptRollback", powerwash).Err
}

// SetChannel sets the Omaha track.
func (c *Client) SetChannel(ctx context.Context, channel string) error {
	return c.call(ctx, Interface, "SetChannel", channel).Err
}
