// Package rebootmgr decides when a host that has staged an update reboots.
//
// Parties and files:
//
//   - update_engine, on the D-Bus name com.coreos.update1 at
//     /com/coreos/update1, interface com.coreos.update1.Manager: GetStatus
//     and the StatusUpdate signal, both (int64 last_checked_time, float64
//     progress, string current_operation, string new_version, int64
//     new_size). Every field is type-checked; a malformed body is skipped.
//     The names, the status tuple and the client are pkg/update1's, shared
//     with the daemon and update_engine_client; callers use them from
//     there (update1.Client, update1.Status).
//     Only the current owner of the name is believed (update1.Client.Watch):
//     StatusUpdate from any other connection is dropped, the owner is
//     followed through the bus driver's NameOwnerChanged, and
//     UPDATED_NEED_REBOOT is acted on only once the owner's GetStatus says
//     it; any local user can send a signal with that body.
//   - logind, org.freedesktop.login1 at /org/freedesktop/login1: Reboot(false)
//     once no "shutdown" block inhibitor is listed by ListInhibitors.
//   - a fleet lock (package etcdlock: locksmith's semaphore on etcd v3;
//     package fleetlock: the FleetLock HTTP protocol of Zincati/airlock).
//   - update.conf (REBOOT_STRATEGY, LOCKSMITHD_REBOOT_WINDOW_START/_LENGTH,
//     LOCKSMITHD_ENDPOINT, LOCKSMITHD_GROUP, …), searched in
//     /etc/flatcar, /etc/coreos, /usr/share/flatcar, /usr/share/coreos;
//     the first file holding a key wins.
//   - /run/update-engine/coordinator.conf (NAME=, STRATEGY=, STATE=) under
//     an exclusive flock held for the manager's lifetime, as locksmithd.
//   - a state file recording the reboot intent (atomic write), so a
//     restarted manager resumes a reboot it had committed to and releases a
//     lock it took before the reboot.
//   - utmp: logged-in users' ttys get "System reboot in 5 minutes!" and the
//     manager waits that long before rebooting (when anyone was warned).
//
// Flow (Manager.Run): on UPDATE_STATUS_UPDATED_NEED_REBOOT (from GetStatus
// at start or a signal) → wait for the reboot window → take the fleet lock
// (retry 5 s doubling to 5 min, jittered) → persist the intent → warn users
// → logind Reboot. While the etcd semaphore is full the manager waits on a
// watch of its key (no polling) and tries again when a slot is freed.
// After the reboot, once update_engine reports any other status, the lock
// is released.
//
// A holder that never comes back (etcd-lock): its slot stays taken until
// an operator runs `update_engine_reboot_manager lock unlock <machine-id>`
// (as `locksmithctl unlock`); `lock status` shows how long each holder
// has held its slot and marks those past -stale-after (1 h) stale.
// Optionally REBOOT_LOCK_TTL (or -lock-ttl) records a deadline next to
// each new holder and lets a contender that finds the semaphore full
// evict holders past their deadline; holders
// written by locksmithd carry no deadline and are never evicted. With
// fleetlock, stuck slots are the server's business (airlock: an operator
// deletes the holder).
//
// Config keys beyond locksmith's: FLEETLOCK_URL (FleetLock base URL; the
// group is LOCKSMITHD_GROUP, default "default") and REBOOT_LOCK_TTL.
//
// Time comes from an injected clock.Clock (pkg/clock, as are clock.Backoff
// and the wait); nothing here sleeps on the wall clock.
package rebootmgr
