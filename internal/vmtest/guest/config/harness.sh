#!/bin/sh
# vmtest-harness.service: the guest half of the whole-host test. Every line
# the host reads starts with "VMTEST ".
say() { echo "VMTEST $*"; }
. /usr/share/flatcar/release
booted=$(sed -n 's/.*usr=PARTUUID=\([0-9a-f-]*\).*/\1/p' /proc/cmdline)
say "boot version=$FLATCAR_RELEASE_VERSION partuuid=$booted bootid=$(cat /proc/sys/kernel/random/boot_id)"
strategy=$(sed -n 's/^REBOOT_STRATEGY=//p' /etc/flatcar/update.conf)
lockstatus() {
	[ "$strategy" = etcd-lock ] || return 0
	say "lock $1 $(update_engine_reboot_manager lock status 2>&1 | tr '\n' ' ')"
}
slots() {
	update_engine_client --disk /dev/vda --slots 2>&1 | sed 1d | while read -r l; do say "slot $1 $l"; done
}
until update_engine_client -status >/dev/null 2>&1; do sleep 1; done
# The Omaha server's log lines reach the console from vmtest-events.service.
# The health gate: update_engine marks the booted slot good (or not) once
# UPDATE_ENGINE_HEALTH_DELAY has passed and the health units are active.
health=""
for _ in $(seq 180); do
	if journalctl -b -u update-engine.service -o cat | grep -Eq 'booted slot marked (good|successful)'; then health=good; break; fi
	if journalctl -b -u update-engine.service -o cat | grep -q 'booted slot not marked good'; then health=bad; break; fi
	sleep 2
done
slots boot
if [ "$health" != good ]; then
	say "unhealthy ${health:-timeout}: the booted slot was not marked good"
	lockstatus unhealthy
	sleep infinity
fi
say "healthy"
# The reboot manager releases the lock on start once update_engine runs
# without a pending reboot; give it a moment before reporting.
if [ "$strategy" = etcd-lock ]; then
	for _ in $(seq 60); do
		update_engine_reboot_manager lock status 2>&1 | grep -q '^Available: [1-9]' && break
		sleep 1
	done
fi
lockstatus afterboot
before=$(update_engine_client -status 2>/dev/null | sed -n 's/^LAST_CHECKED_TIME=//p')
say "check"
update_engine_client -check_for_update >/dev/null
last="" busy=""
while :; do
	st=$(update_engine_client -status 2>/dev/null)
	op=$(echo "$st" | sed -n 's/^CURRENT_OP=//p')
	checked=$(echo "$st" | sed -n 's/^LAST_CHECKED_TIME=//p')
	if [ -n "$op" ] && [ "$op" != "$last" ]; then say "status $op"; last=$op; fi
	case "$op" in
	UPDATE_STATUS_IDLE)
		if [ -n "$busy" ] || [ "$checked" != "$before" ]; then
			sync
			say "checked"
			break
		fi
		;;
	UPDATE_STATUS_UPDATED_NEED_REBOOT)
		slots flipped
		lockstatus needreboot
		break
		;;
	?*) busy=1 ;;
	esac
	sleep 5
done
# A scenario's own steps after the update, when its config disk has them.
if [ -x /run/vmtest/payloads/after-update.sh ]; then /run/vmtest/payloads/after-update.sh; fi
sleep infinity
