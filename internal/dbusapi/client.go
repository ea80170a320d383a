package dbusapi

import (
	"context"

	"github.com/abupdate/update_engine/pkg/update1"
)

// Client talks to a running update_engine over D-Bus (pkg/update1's).
type Client = update1.Client

// SystemBusAddress returns the system bus address: DBUS_SYSTEM_BUS_ADDRESS
// when set, else the well-known socket.
func SystemBusAddress() string { return update1.SystemBusAddress() }

// Dial connects to the bus at addr ("" = the system bus); see
// update1.Dial.
func Dial(ctx context.Context, addr string) (*Client, error) { return update1.Dial(ctx, addr) }
