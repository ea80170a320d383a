// Package etcdlock is locksmith's fleet-wide reboot semaphore on etcd's v3
// API.
//
// Keys (locksmith's, unchanged):
//
//	coreos.com/updateengine/rebootlock/semaphore                      default group
//	coreos.com/updateengine/rebootlock/groups/<QueryEscape(G)>/semaphore  group G
//
// Value (JSON, as locksmith writes it):
//
//	{"semaphore":<available>,"max":<slots>,"holders":[<machine-id>,…]}
//
// holders is sorted; a missing key is created as
// {"semaphore":1,"max":1,"holders":null}. Every change is a transaction
// that compares the key's ModRevision with the one read (compare-and-swap),
// so concurrent hosts never lose an update; a lost race is retried.
//
// A holder that never comes back keeps its slot until an operator runs
// `update_engine_reboot_manager lock unlock <machine-id>` (Client.Unlock
// with that id), as with locksmithctl. Optionally (Client.HolderTTL > 0) a
// holder also records a deadline under
//
//	<semaphore key>-expiry/<machine-id>    RFC 3339 time, UTC
//
// and a contender that finds the semaphore full evicts holders whose
// deadline has passed. Holders without a deadline record (e.g. locksmithd)
// are never evicted automatically.
//
// Every holder taken through Client also records when it took its slot,
// in the same transaction, deleted with the slot:
//
//	<semaphore key>-since/<machine-id>     RFC 3339 time, UTC
//
// so `lock status` says how long each slot has been held and calls it
// stale past a limit. A contender that finds the semaphore full does not
// poll: WaitFree watches the key from the revision it read (requiring a
// leader, so a member cut off from the cluster ends the watch) and tries
// again once a change frees a slot, after a random spread so that one
// freed slot draws a few attempts rather than one per waiter.
package etcdlock

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
)

// Errors. None leaves the reboot manager as an update_engine code (the
// reboot manager is not part of the update_engine state machine); they map
// to kActionCodeError (1) if ever reported.
var (
	// ErrFull: no slot is available.
	ErrFull = errors.New("etcdlock: semaphore is full")
	// ErrNotHeld: the id is not a holder.
	ErrNotHeld = errors.New("etcdlock: lock not held")
	// ErrBadValue: the stored value is not locksmith's JSON.
	ErrBadValue = errors.New("etcdlock: malformed semaphore value")
	// ErrBadMax: a max below 0 or below the current holder count.
	ErrBadMax = errors.New("etcdlock: invalid max")
)

// Prefix is the root of locksmith's keys.
const Prefix = "coreos.com/updateengine/rebootlock"

// Key returns the semaphore key of group ("" = the default group).
func Key(group string) string {
	if group == "" {
		return Prefix + "/semaphore"
	}
	return Prefix + "/groups/" + url.QueryEscape(group) + "/semaphore"
}

// Semaphore is the stored value. It is a plain value: methods return
// errors and change only the receiver.
type Semaphore struct {
	Semaphore int      `json:"semaphore"`
	Max       int      `json:"max"`
	Holders   []string `json:"holders"`
}

// NewSemaphore is the value locksmith creates for a missing key.
func NewSemaphore() Semaphore { return Semaphore{Semaphore: 1, Max: 1} }

// Parse decodes a stored value.
func Parse(b []byte) (Semaphore, error) {
	var s Semaphore
	if err := json.Unmarshal(b, &s); err != nil {
		return Semaphore{}, fmt.Errorf("%w: %v", ErrBadValue, err)
	}
	if s.Max < 0 {
		return Semaphore{}, fmt.Errorf("%w: max %d", ErrBadValue, s.Max)
	}
	return s, nil
}

// Marshal encodes s in locksmith's format (holders sorted).
func (s Semaphore) Marshal() []byte {
	slices.Sort(s.Holders)
	b, _ := json.Marshal(s) // cannot fail: ints and strings
	return b
}

// Holds reports whether id is a holder.
func (s *Semaphore) Holds(id string) bool { return slices.Contains(s.Holders, id) }

// Lock adds id as a holder. Holding it already is success (changed=false).
func (s *Semaphore) Lock(id string) (changed bool, err error) {
	if s.Holds(id) {
		return false, nil
	}
	if s.Semaphore <= 0 {
		return false, ErrFull
	}
	s.Semaphore--
	s.Holders = append(s.Holders, id)
	slices.Sort(s.Holders)
	return true, nil
}

// Unlock removes id from the holders.
func (s *Semaphore) Unlock(id string) error {
	i := slices.Index(s.Holders, id)
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrNotHeld, id)
	}
	s.Holders = slices.Delete(s.Holders, i, i+1)
	if len(s.Holders) == 0 {
		s.Holders = nil
	}
	s.Semaphore++
	return nil
}

// SetMax changes the number of slots, shifting the available count by the
// difference, as locksmithctl set-max does.
func (s *Semaphore) SetMax(max int) error {
	if max < 0 {
		return fmt.Errorf("%w: %d", ErrBadMax, max)
	}
	s.Semaphore += max - s.Max
	s.Max = max
	return nil
}
