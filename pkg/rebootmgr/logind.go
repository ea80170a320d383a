package rebootmgr

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/abupdate/update_engine/pkg/clock"
)

// logind's D-Bus names.
const (
	LogindName      = "org.freedesktop.login1"
	LogindPath      = dbus.ObjectPath("/org/freedesktop/login1")
	LogindInterface = "org.freedesktop.login1.Manager"
)

// Inhibitor is one entry of logind's ListInhibitors (a(ssssuu)).
type Inhibitor struct {
	What, Who, Why, Mode string
	UID, PID             uint32
}

// BlocksShutdown reports whether i is a block inhibitor on "shutdown".
func (i Inhibitor) BlocksShutdown() bool {
	if i.Mode != "block" {
		return false
	}
	for _, w := range strings.Split(i.What, ":") {
		if w == "shutdown" {
			return true
		}
	}
	return false
}

// Logind reboots through systemd-logind, waiting while a shutdown block
// inhibitor is held.
type Logind struct {
	Conn  *dbus.Conn
	Clock clock.Clock
	// Retry is the wait between inhibitor checks (default 1 min).
	Retry time.Duration
	Logf  func(format string, args ...any)
}

// Inhibitors lists logind's inhibitors.
func (l *Logind) Inhibitors(ctx context.Context) ([]Inhibitor, error) {
	var raw [][]any
	call := l.Conn.Object(LogindName, LogindPath).CallWithContext(ctx, LogindInterface+".ListInhibitors", 0)
	if call.Err != nil {
		return nil, fmt.Errorf("rebootmgr: ListInhibitors: %w", call.Err)
	}
	if err := call.Store(&raw); err != nil {
		return nil, fmt.Errorf("rebootmgr: ListInhibitors reply: %w", err)
	}
	out := make([]Inhibitor, 0, len(raw))
	for _, r := range raw {
		var in Inhibitor
		if len(r) != 6 {
			return nil, fmt.Errorf("rebootmgr: ListInhibitors entry has %d fields", len(r))
		}
		var ok [6]bool
		in.What, ok[0] = r[0].(string)
		in.Who, ok[1] = r[1].(string)
		in.Why, ok[2] = r[2].(string)
		in.Mode, ok[3] = r[3].(string)
		in.UID, ok[4] = r[4].(uint32)
		in.PID, ok[5] = r[5].(uint32)
		if ok != [6]bool{true, true, true, true, true, true} {
			return nil, fmt.Errorf("rebootmgr: ListInhibitors entry %v is not (ssssuu)", r)
		}
		out = append(out, in)
	}
	return out, nil
}

// Reboot waits until no shutdown block inhibitor is held, then calls
// Reboot(false) (non-interactive).
func (l *Logind) Reboot(ctx context.Context) error {
	retry := l.Retry
	if retry <= 0 {
		retry = time.Minute
	}
	for {
		ins, err := l.Inhibitors(ctx)
		if err != nil {
			return err
		}
		var blocking []string
		for _, in := range ins {
			if in.BlocksShutdown() {
				blocking = append(blocking, fmt.Sprintf("%s (%s)", in.Who, in.Why))
			}
		}
		if len(blocking) == 0 {
			break
		}
		if l.Logf != nil {
			l.Logf("reboot blocked by inhibitors %s; retrying in %v", strings.Join(blocking, ", "), retry)
		}
		if err := clock.Sleep(ctx, l.Clock, retry); err != nil {
			return err
		}
	}
	call := l.Conn.Object(LogindName, LogindPath).CallWithContext(ctx, LogindInterface+".Reboot", 0, false)
	if call.Err != nil {
		return fmt.Errorf("rebootmgr: logind Reboot: %w", call.Err)
	}
	return nil
}
