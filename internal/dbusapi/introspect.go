package dbusapi

import (
	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/abupdate/update_engine/pkg/update1"
)

// statusArgs are the out/signal arguments xdssx, named as in Flatcar's
// update_engine.xml.
func statusArgs(dir string) []introspect.Arg {
	return []introspect.Arg{
		{Name: "last_checked_time", Type: "x", Direction: dir},
		{Name: "progress", Type: "d", Direction: dir},
		{Name: "current_operation", Type: "s", Direction: dir},
		{Name: "new_version", Type: "s", Direction: dir},
		{Name: "new_size", Type: "x", Direction: dir},
	}
}

func coreOSNode() *introspect.Node {
	return &introspect.Node{
		Name: update1.Path,
		Interfaces: []introspect.Interface{
			{
				Name: update1.Interface,
				Methods: []introspect.Method{
					{Name: "AttemptUpdate"},
					{Name: "ResetStatus"},
					{Name: "GetStatus", Args: statusArgs("out")},
				},
				Signals: []introspect.Signal{{Name: update1.SignalStatusUpdate, Args: statusArgs("")}},
			},
			{
				Name: update1.OwnInterface,
				Methods: []introspect.Method{
					{Name: "GetStatusJSON", Args: []introspect.Arg{{Name: "status", Type: "s", Direction: "out"}}},
					{Name: "AttemptRollback", Args: []introspect.Arg{{Name: "powerwash", Type: "b", Direction: "in"}}},
					{Name: "CanRollback", Args: []introspect.Arg{{Name: "can_rollback", Type: "b", Direction: "out"}}},
					{Name: "SetChannel", Args: []introspect.Arg{{Name: "channel", Type: "s", Direction: "in"}}},
					{Name: "GetChannel", Args: []introspect.Arg{{Name: "channel", Type: "s", Direction: "out"}}},
					{Name: "GetLastAttemptError", Args: []introspect.Arg{{Name: "code", Type: "i", Direction: "out"}}},
				},
			},
		},
	}
}

func chromeOSNode() *introspect.Node {
	return &introspect.Node{
		Name: update1.ChromeOSPath,
		Interfaces: []introspect.Interface{{
			Name: update1.ChromeOSInterface,
			Methods: []introspect.Method{
				{Name: "AttemptUpdate", Args: []introspect.Arg{
					{Name: "app_version", Type: "s", Direction: "in"},
					{Name: "omaha_url", Type: "s", Direction: "in"},
				}},
				{Name: "ResetStatus"},
				{Name: "GetStatus", Args: statusArgs("out")},
			},
			Signals: []introspect.Signal{{Name: update1.SignalStatusUpdate, Args: statusArgs("")}},
		}},
	}
}

// introspectable returns the Introspect handler for n.
func introspectable(n *introspect.Node) func() (string, *dbus.Error) {
	x := string(introspect.NewIntrospectable(n))
	return func() (string, *dbus.Error) { return x, nil }
}
