package rebootmgr

import (
	"fmt"

	"github.com/abupdate/update_engine/pkg/clock"
	"github.com/abupdate/update_engine/pkg/update1"
	"github.com/godbus/dbus/v5"
)

// The names below are this package's API from before pkg/update1 and
// pkg/clock held the definitions; they are aliases, not copies.

// update_engine's public D-Bus names (SPEC section 1a).
const (
	UpdateEngineName      = update1.Name
	UpdateEnginePath      = dbus.ObjectPath(update1.Path)
	UpdateEngineInterface = update1.Interface
	StatusUpdateSignal    = update1.SignalStatusUpdate
)

// Status strings this package acts on.
const (
	StatusIdle        = update1.StatusIdle
	StatusNeedsReboot = update1.StatusUpdatedNeedReboot
)

// ErrBadStatus: a GetStatus reply or StatusUpdate body that is not
// (int64, float64, string, string, int64).
var ErrBadStatus = update1.ErrBadStatus

// Status is update_engine's status tuple.
type Status = update1.Status

// ParseStatus type-checks every field of a D-Bus body.
func ParseStatus(body []any) (Status, error) { return update1.ParseStatus(body) }

// UpdateEngine is a client of update_engine's public D-Bus interface;
// its Watch believes only the owner of com.coreos.update1.
type UpdateEngine = update1.Client

// NewUpdateEngine returns a client on conn. The caller closes conn.
func NewUpdateEngine(conn *dbus.Conn) *UpdateEngine { return update1.NewClient(conn) }

// Clock is the manager's source of time. Tests inject a fake one; main
// passes SystemClock.
type Clock = clock.Clock

// SystemClock is the real clock.
type SystemClock = clock.Real

// Backoff is a jittered exponential delay: Min, doubling up to Max. The
// zero value is locksmith's 5 s → 5 min.
type Backoff = clock.Backoff

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
