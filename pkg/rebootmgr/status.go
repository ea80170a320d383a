package rebootmgr

import (
	"context"
	"errors"
	"fmt"

	"github.com/godbus/dbus/v5"
)

// update_engine's public D-Bus names (SPEC section 1a).
const (
	UpdateEngineName      = "com.coreos.update1"
	UpdateEnginePath      = dbus.ObjectPath("/com/coreos/update1")
	UpdateEngineInterface = "com.coreos.update1.Manager"
	StatusUpdateSignal    = "StatusUpdate"
)

// Status strings this package acts on.
const (
	StatusIdle        = "UPDATE_STATUS_IDLE"
	StatusNeedsReboot = "UPDATE_STATUS_UPDATED_NEED_REBOOT"
)

// ErrBadStatus: a GetStatus reply or StatusUpdate body that is not
// (int64, float64, string, string, int64).
var ErrBadStatus = errors.New("rebootmgr: malformed update_engine status")

// Status is update_engine's status tuple.
type Status struct {
	LastCheckedTime  int64
	Progress         float64
	CurrentOperation string
	NewVersion       string
	NewSize          int64
}

// NeedsReboot reports whether an update is staged and waits for a reboot.
func (s Status) NeedsReboot() bool { return s.CurrentOperation == StatusNeedsReboot }

// ParseStatus type-checks every field of a D-Bus body.
func ParseStatus(body []any) (Status, error) {
	var s Status
	if len(body) != 5 {
		return s, fmt.Errorf("%w: %d fields, want 5", ErrBadStatus, len(body))
	}
	var ok [5]bool
	s.LastCheckedTime, ok[0] = body[0].(int64)
	s.Progress, ok[1] = body[1].(float64)
	s.CurrentOperation, ok[2] = body[2].(string)
	s.NewVersion, ok[3] = body[3].(string)
	s.NewSize, ok[4] = body[4].(int64)
	for i, good := range ok {
		if !good {
			return Status{}, fmt.Errorf("%w: field %d is %T", ErrBadStatus, i, body[i])
		}
	}
	return s, nil
}

// UpdateEngine is a client of update_engine's public D-Bus interface on
// its own private connection. Set the fields before Watch.
type UpdateEngine struct {
	conn *dbus.Conn
	// Queue is how many statuses Watch keeps for a reader that lags,
	// dropping the oldest first. 0 keeps only the latest (the reboot
	// manager acts on the current status, never a stale one);
	// update_engine_client, printing every signal, keeps more.
	Queue int
	// Logf, if set, reports the signals Watch ignores.
	Logf func(format string, args ...any)
}

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

// NewUpdateEngine returns a client on conn. The caller closes conn.
func NewUpdateEngine(conn *dbus.Conn) *UpdateEngine { return &UpdateEngine{conn: conn} }

// GetStatus calls com.coreos.update1.Manager.GetStatus.
func (u *UpdateEngine) GetStatus(ctx context.Context) (Status, error) {
	return getStatus(ctx, u.conn, UpdateEngineName)
}

// getStatus calls GetStatus on dest, a bus name.
func getStatus(ctx context.Context, conn *dbus.Conn, dest string) (Status, error) {
	call := conn.Object(dest, UpdateEnginePath).CallWithContext(ctx, UpdateEngineInterface+".GetStatus", 0)
	if call.Err != nil {
		return Status{}, fmt.Errorf("rebootmgr: GetStatus from %s: %w", dest, call.Err)
	}
	return ParseStatus(call.Body)
}
