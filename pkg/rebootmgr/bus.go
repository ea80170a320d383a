package rebootmgr

import (
	"fmt"

	"github.com/godbus/dbus/v5"
)

// Connect opens a private connection to the bus at address ("" = the
// system bus).
func Connect(address string) (*dbus.Conn, error) {
	var conn *dbus.Conn
	var err error
	if address == "" {
		conn, err = dbus.ConnectSystemBus()
	} else {
		conn, err = dbus.Connect(address)
	}
	if err != nil {
		return nil, fmt.Errorf("rebootmgr: connect to bus %q: %w", address, err)
	}
	return conn, nil
}
