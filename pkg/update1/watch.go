package update1

import (
	"context"
	"errors"
	"fmt"

	"github.com/godbus/dbus/v5"
)

// The bus driver, the only sender of NameOwnerChanged we believe.
const (
	busDriverName     = "org.freedesktop.DBus"
	busDriverPath     = dbus.ObjectPath("/org/freedesktop/DBus")
	nameOwnerChanged  = busDriverName + ".NameOwnerChanged"
	errNameHasNoOwner = "org.freedesktop.DBus.Error.NameHasNoOwner"
)

// Watch delivers update_engine's status as it changes until ctx is done
// or the connection closes; then the channel is closed.
//
// Any local user may send a StatusUpdate signal with any body, broadcast
// or unicast to us; the system bus guarantees only the sender field, the
// sending connection's unique name. So Watch believes only the current
// owner of com.coreos.update1:
//
//   - It learns the owner's unique name from GetNameOwner at start and then
//     from NameOwnerChanged, taken only from the bus driver itself (sender
//     org.freedesktop.DBus); a forged one is ignored.
//   - Its StatusUpdate match rule names the owner (sender=':1.N') and moves
//     when the owner changes. Unicast signals bypass match rules, so every
//     signal is also checked in process: not from the owner, not from
//     /com/coreos/update1, or not xdssx, and it is dropped (and logged).
//     While nobody owns the name every StatusUpdate is dropped.
//   - When the name changes hands it delivers the new owner's GetStatus
//     (asked after the match rule moved, so nothing falls in between).
//   - It never delivers UPDATED_NEED_REBOOT on a signal's word: such a
//     signal is replaced by the owner's GetStatus answer, whatever that is,
//     and dropped if the owner does not answer.
//
// One goroutine reads signals and makes no calls, so a flood of forged
// signals can neither stall the connection nor reorder the owner's (godbus
// reorders a channel's signals only once it is full); a second one makes
// the calls and keeps Queue statuses for the reader. Match rules stay
// until the connection closes.
func (u *Client) Watch(ctx context.Context) (<-chan Status, error) {
	in := make(chan *dbus.Signal, 64)
	u.conn.Signal(in)
	owner, err := u.subscribe(ctx)
	if err != nil {
		u.conn.RemoveSignal(in)
		return nil, err
	}
	events := make(chan watchEvent)
	out := make(chan Status)
	f := &signalFilter{owner: owner, logf: u.logf}
	go func() {
		defer u.conn.RemoveSignal(in)
		// Only the owner's signals and the driver's owner changes are
		// queued, so the queue grows only as fast as update_engine talks.
		relay(ctx, in, events, 0, f.check)
	}()
	matched := owner // the owner our StatusUpdate match rule names
	go relay(ctx, events, out, max(u.Queue, 1), func(ev watchEvent) (Status, bool) {
		if ev.st == nil {
			return u.followOwner(ctx, &matched, ev.owner)
		}
		return u.confirm(ctx, ev.owner, *ev.st)
	})
	return out, nil
}

// relay passes what f makes of each value from in to out, in order, until
// ctx is done or in is closed; then it closes out. It never blocks on out:
// a reader that lags finds up to keep values waiting, the oldest dropped
// first (keep 0: no limit).
func relay[I, O any](ctx context.Context, in <-chan I, out chan<- O, keep int, f func(I) (O, bool)) {
	defer close(out)
	var queue []O
	for {
		var send chan<- O // nil (blocks) while nothing is queued
		var next O
		if len(queue) > 0 {
			send, next = out, queue[0]
		}
		select {
		case <-ctx.Done():
			return
		case send <- next:
			queue = queue[1:]
		case v, ok := <-in:
			if !ok {
				return
			}
			if o, ok := f(v); ok {
				queue = append(queue, o)
				if keep > 0 && len(queue) > keep {
					queue = queue[1:]
				}
			}
		}
	}
}

func (u *Client) logf(format string, args ...any) {
	if u.Logf != nil {
		u.Logf(format, args...)
	}
}

// subscribe follows NameOwnerChanged for com.coreos.update1, then asks for
// the owner and subscribes to its StatusUpdate. In that order, a change
// after GetNameOwner still arrives as a signal.
func (u *Client) subscribe(ctx context.Context) (string, error) {
	if err := u.conn.AddMatchSignalContext(ctx, ownerChangedRule()...); err != nil {
		return "", fmt.Errorf("update1: AddMatch NameOwnerChanged: %w", err)
	}
	var owner string
	err := u.conn.BusObject().CallWithContext(ctx, busDriverName+".GetNameOwner", 0, Name).Store(&owner)
	var derr dbus.Error
	if errors.As(err, &derr) && derr.Name == errNameHasNoOwner {
		owner, err = "", nil
	}
	if err != nil {
		return "", fmt.Errorf("update1: GetNameOwner %s: %w", Name, err)
	}
	if owner != "" {
		if err := u.conn.AddMatchSignalContext(ctx, statusRule(owner)...); err != nil {
			return "", fmt.Errorf("update1: AddMatch StatusUpdate from %s: %w", owner, err)
		}
	}
	return owner, nil
}

func ownerChangedRule() []dbus.MatchOption {
	return []dbus.MatchOption{
		dbus.WithMatchSender(busDriverName),
		dbus.WithMatchObjectPath(busDriverPath),
		dbus.WithMatchInterface(busDriverName),
		dbus.WithMatchMember("NameOwnerChanged"),
		dbus.WithMatchArg(0, Name),
	}
}

// statusRule matches StatusUpdate from owner, a unique name.
func statusRule(owner string) []dbus.MatchOption {
	return []dbus.MatchOption{
		dbus.WithMatchSender(owner),
		dbus.WithMatchObjectPath(dbus.ObjectPath(Path)),
		dbus.WithMatchInterface(Interface),
		dbus.WithMatchMember(SignalStatusUpdate),
	}
}

// watchEvent passes, in bus order, a StatusUpdate from owner (st set) or
// the news that owner now owns the name ("" = nobody, st nil).
type watchEvent struct {
	owner string
	st    *Status
}

// signalFilter keeps what the bus driver says about the owner and drops
// every other signal that is not the owner's StatusUpdate. It makes no
// calls.
type signalFilter struct {
	owner   string // current owner's unique name, "" = none
	ignored int    // StatusUpdate signals dropped so far
	logf    func(format string, args ...any)
}

// check classifies one signal.
func (f *signalFilter) check(sig *dbus.Signal) (watchEvent, bool) {
	switch sig.Name {
	case nameOwnerChanged:
		if sig.Sender != busDriverName || sig.Path != busDriverPath || len(sig.Body) != 3 {
			return watchEvent{}, false
		}
		name, _ := sig.Body[0].(string)
		newOwner, ok := sig.Body[2].(string)
		if name != Name || !ok || newOwner == f.owner {
			return watchEvent{}, false
		}
		f.owner = newOwner
		return watchEvent{owner: newOwner}, true
	case Interface + "." + SignalStatusUpdate:
		if f.owner == "" || sig.Sender != f.owner || sig.Path != dbus.ObjectPath(Path) {
			f.ignore(sig)
			return watchEvent{}, false
		}
		st, err := ParseStatus(sig.Body)
		if err != nil {
			return watchEvent{}, false
		}
		return watchEvent{owner: f.owner, st: &st}, true
	}
	return watchEvent{}, false
}

// ignore logs a dropped StatusUpdate: the first 8, then at powers of two,
// so a flood cannot flood the log.
func (f *signalFilter) ignore(sig *dbus.Signal) {
	f.ignored++
	if f.ignored > 8 && f.ignored&(f.ignored-1) != 0 {
		return
	}
	owner := f.owner
	if owner == "" {
		owner = "nobody"
	}
	body := fmt.Sprintf("%v", sig.Body)
	if len(body) > 100 {
		body = body[:100] + "…"
	}
	f.logf("ignored StatusUpdate %q from %s on %s (%d ignored so far): %s is owned by %s",
		body, sig.Sender, sig.Path, f.ignored, Name, owner)
}

// followOwner moves the StatusUpdate match rule from *matched to owner and
// returns the new owner's status.
func (u *Client) followOwner(ctx context.Context, matched *string, owner string) (Status, bool) {
	if *matched != "" {
		if err := u.conn.RemoveMatchSignalContext(ctx, statusRule(*matched)...); err != nil {
			u.logf("update1: RemoveMatch StatusUpdate from %s: %v", *matched, err)
		}
		*matched = ""
	}
	if owner == "" {
		u.logf("%s has no owner: ignoring StatusUpdate until it has one", Name)
		return Status{}, false
	}
	if err := u.conn.AddMatchSignalContext(ctx, statusRule(owner)...); err != nil {
		u.logf("update1: AddMatch StatusUpdate from %s: %v", owner, err)
	} else {
		*matched = owner
	}
	st, err := u.getStatus(ctx, owner)
	if err != nil {
		u.logf("%s is owned by %s now, but %v", Name, owner, err)
		return Status{}, false
	}
	u.logf("%s is owned by %s now: %s", Name, owner, st.CurrentOperation)
	return st, true
}

// confirm returns st, or for UPDATED_NEED_REBOOT what owner's GetStatus
// says instead.
func (u *Client) confirm(ctx context.Context, owner string, st Status) (Status, bool) {
	if !st.NeedsReboot() {
		return st, true
	}
	got, err := u.getStatus(ctx, owner)
	if err != nil {
		u.logf("StatusUpdate from %s says %s, but %v: not acting on it", owner, StatusUpdatedNeedReboot, err)
		return Status{}, false
	}
	if !got.NeedsReboot() {
		u.logf("StatusUpdate from %s says %s, but GetStatus says %s", owner, StatusUpdatedNeedReboot, got.CurrentOperation)
	}
	return got, true
}
