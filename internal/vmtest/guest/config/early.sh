#!/bin/sh
# vmtest-early.service: runs before update_engine and the reboot manager.
say() { echo "VMTEST $*"; }
if grep -q '^REBOOT_STRATEGY=etcd-lock' /etc/flatcar/update.conf; then
	# The reboot lock as the previous boot left it (etcd is up: ordered after it).
	for _ in $(seq 30); do
		out=$(update_engine_reboot_manager lock status 2>&1) && break
		sleep 2
	done
	say "lock early $(echo "$out" | tr '\n' ' ')"
fi
exit 0
