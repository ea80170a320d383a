package dbusapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/godbus/dbus/v5"

	"github.com/abupdate/update_engine/pkg/update1"
)

// Server is the exported service on one bus connection.
type Server struct {
	conn *dbus.Conn
	eng  Engine
	opts Options

	mu    sync.Mutex // guards names
	names []string   // bus names we own, released by Close
}

// Options tune a Server. The zero value is the production setting.
type Options struct {
	// AllowUsers lists uids, besides 0, that may call the root-only
	// methods of our own interface. Tests running unprivileged use it.
	AllowUsers []uint32
	// SkipChromeOSName does not request org.chromium.UpdateEngine (the
	// object is still exported on the connection).
	SkipChromeOSName bool
}

// Export exports the objects on conn and then requests the bus names, so
// a Type=dbus unit is only reported ready once calls can be answered. It
// fails if com.coreos.update1 is already owned. ctx bounds the setup calls.
func Export(ctx context.Context, conn *dbus.Conn, eng Engine, opts Options) (*Server, error) {
	s := &Server{conn: conn, eng: eng, opts: opts}
	if err := s.export(); err != nil {
		return nil, err
	}
	names := []string{update1.Name}
	if !opts.SkipChromeOSName {
		names = append(names, update1.ChromeOSName)
	}
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			s.Close()
			return nil, err
		}
		reply, err := conn.RequestName(n, dbus.NameFlagDoNotQueue)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("dbusapi: request name %s: %w", n, err)
		}
		if reply != dbus.RequestNameReplyPrimaryOwner && reply != dbus.RequestNameReplyAlreadyOwner {
			s.Close()
			return nil, fmt.Errorf("dbusapi: bus name %s is already owned (%v): is another update_engine running?", n, reply)
		}
		s.mu.Lock()
		s.names = append(s.names, n)
		s.mu.Unlock()
	}
	return s, nil
}

func (s *Server) export() error {
	coreos := map[string]any{
		"AttemptUpdate": s.attemptUpdate,
		"ResetStatus":   s.resetStatus,
		"GetStatus":     s.getStatus,
	}
	chromeos := map[string]any{
		"AttemptUpdate": s.attemptUpdateChromeOS,
		"ResetStatus":   s.resetStatus,
		"GetStatus":     s.getStatus,
	}
	ours := map[string]any{
		"GetStatusJSON":       s.getStatusJSON,
		"AttemptRollback":     s.attemptRollback,
		"CanRollback":         s.canRollback,
		"SetChannel":          s.setChannel,
		"GetChannel":          s.getChannel,
		"GetLastAttemptError": s.getLastAttemptError,
	}
	exports := []struct {
		methods map[string]any
		path    dbus.ObjectPath
		iface   string
	}{
		{coreos, update1.Path, update1.Interface},
		{ours, update1.Path, update1.OwnInterface},
		{chromeos, update1.ChromeOSPath, update1.ChromeOSInterface},
		{map[string]any{"Introspect": introspectable(coreOSNode())}, update1.Path, "org.freedesktop.DBus.Introspectable"},
		{map[string]any{"Introspect": introspectable(chromeOSNode())}, update1.ChromeOSPath, "org.freedesktop.DBus.Introspectable"},
	}
	for _, e := range exports {
		if err := s.conn.ExportMethodTable(e.methods, e.path, e.iface); err != nil {
			return fmt.Errorf("dbusapi: export %s on %s: %w", e.iface, e.path, err)
		}
	}
	return nil
}

// Emit sends StatusUpdate(xdssx) from both compatible objects.
func (s *Server) Emit(st update1.Status) error {
	body := st.Body()
	err1 := s.conn.Emit(update1.Path, update1.Interface+"."+update1.SignalStatusUpdate, body...)
	err2 := s.conn.Emit(update1.ChromeOSPath, update1.ChromeOSInterface+"."+update1.SignalStatusUpdate, body...)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("dbusapi: emit StatusUpdate: %w", err)
	}
	return nil
}

// Close releases the bus names and unexports the objects. The connection
// stays open; its owner closes it.
func (s *Server) Close() {
	s.mu.Lock()
	names := s.names
	s.names = nil
	s.mu.Unlock()
	for _, n := range names {
		_, _ = s.conn.ReleaseName(n)
	}
	for _, p := range []struct {
		path  dbus.ObjectPath
		iface string
	}{
		{update1.Path, update1.Interface}, {update1.Path, update1.OwnInterface}, {update1.ChromeOSPath, update1.ChromeOSInterface},
		{update1.Path, "org.freedesktop.DBus.Introspectable"}, {update1.ChromeOSPath, "org.freedesktop.DBus.Introspectable"},
	} {
		_ = s.conn.ExportMethodTable(nil, p.path, p.iface)
	}
}

// callCtx bounds the engine's work for one call; the engine only queues
// requests, so this is short.
func (s *Server) callCtx() (context.Context, context.CancelFunc) {
	return context.WithCancel(s.conn.Context())
}

func failed(err error) *dbus.Error {
	return dbus.NewError(update1.ErrorFailed, []any{err.Error()})
}

func (s *Server) getStatus() (int64, float64, string, string, int64, *dbus.Error) {
	st := s.eng.Status()
	return st.LastCheckedTime, st.Progress, st.CurrentOperation, st.NewVersion, st.NewSize, nil
}

func (s *Server) attemptUpdate() *dbus.Error {
	return s.attemptUpdateChromeOS("", "")
}

func (s *Server) attemptUpdateChromeOS(appVersion, omahaURL string) *dbus.Error {
	ctx, cancel := s.callCtx()
	defer cancel()
	if err := s.eng.AttemptUpdate(ctx, UpdateRequest{AppVersion: appVersion, OmahaURL: omahaURL}); err != nil {
		return failed(err)
	}
	return nil
}

func (s *Server) resetStatus() *dbus.Error {
	ctx, cancel := s.callCtx()
	defer cancel()
	if err := s.eng.ResetStatus(ctx); err != nil {
		return failed(err)
	}
	return nil
}

func (s *Server) getStatusJSON() (string, *dbus.Error) {
	b, err := json.Marshal(s.eng.Detail())
	if err != nil {
		return "", failed(err)
	}
	return string(b), nil
}

func (s *Server) attemptRollback(sender dbus.Sender, powerwash bool) *dbus.Error {
	if derr := s.requireRoot(sender); derr != nil {
		return derr
	}
	ctx, cancel := s.callCtx()
	defer cancel()
	if err := s.eng.AttemptRollback(ctx, powerwash); err != nil {
		return failed(err)
	}
	return nil
}

func (s *Server) canRollback() (bool, *dbus.Error) {
	return s.eng.Detail().CanRollback, nil
}

func (s *Server) setChannel(sender dbus.Sender, channel string) *dbus.Error {
	if derr := s.requireRoot(sender); derr != nil {
		return derr
	}
	ctx, cancel := s.callCtx()
	defer cancel()
	if err := s.eng.SetChannel(ctx, channel); err != nil {
		return failed(err)
	}
	return nil
}

func (s *Server) getChannel() (string, *dbus.Error) {
	return s.eng.Detail().Channel, nil
}

func (s *Server) getLastAttemptError() (int32, *dbus.Error) {
	return s.eng.Detail().LastError, nil
}

// requireRoot asks the bus for the caller's uid and refuses anyone but
// root and Options.AllowUsers.
func (s *Server) requireRoot(sender dbus.Sender) *dbus.Error {
	var uid uint32
	err := s.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, string(sender)).Store(&uid)
	if err != nil {
		return dbus.NewError(update1.ErrorAccessDenied, []any{"cannot identify caller: " + err.Error()})
	}
	if uid == 0 {
		return nil
	}
	for _, u := range s.opts.AllowUsers {
		if u == uid {
			return nil
		}
	}
	return dbus.NewError(update1.ErrorAccessDenied, []any{fmt.Sprintf("uid %d may not call this method; only root may", uid)})
}
