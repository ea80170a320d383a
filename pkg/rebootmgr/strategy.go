package rebootmgr

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadStrategy: REBOOT_STRATEGY names no known strategy.
var ErrBadStrategy = errors.New("rebootmgr: unknown reboot strategy")

// Strategy is what the manager does once an update needs a reboot.
type Strategy int

const (
	// StrategyReboot reboots (within the window, if any). Default.
	StrategyReboot Strategy = iota
	// StrategyOff does nothing; the manager exits.
	StrategyOff
	// StrategyEtcdLock takes locksmith's etcd semaphore first.
	StrategyEtcdLock
	// StrategyFleetLock takes a FleetLock slot first.
	StrategyFleetLock
)

var strategyNames = map[Strategy]string{
	StrategyReboot:    "reboot",
	StrategyOff:       "off",
	StrategyEtcdLock:  "etcd-lock",
	StrategyFleetLock: "fleetlock",
}

// String returns the update.conf spelling.
func (s Strategy) String() string {
	if n, ok := strategyNames[s]; ok {
		return n
	}
	return fmt.Sprintf("Strategy(%d)", int(s))
}

// NeedsLock reports whether the strategy takes a fleet lock.
func (s Strategy) NeedsLock() bool { return s == StrategyEtcdLock || s == StrategyFleetLock }

// ParseStrategy parses REBOOT_STRATEGY ("" = reboot, case-insensitive).
// locksmith's removed "best-effort" is refused.
func ParseStrategy(v string) (Strategy, error) {
	v = strings.ToLower(strings.TrimSpace(v))
	if v == "" {
		return StrategyReboot, nil
	}
	for s, n := range strategyNames {
		if n == v {
			return s, nil
		}
	}
	return 0, fmt.Errorf("%w: %q (want reboot, etcd-lock, fleetlock or off)", ErrBadStrategy, v)
}
