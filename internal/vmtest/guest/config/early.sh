#!/bin/sh
# vmtest-early.service: runs before update_engine and the reboot manager.
say() { echo "VMTEST $*"; }
if grep -q '^REBOOT_STRATEGY=etcd-lock' /etc/flatcar/update.conf; then
	# The reboot lock as the previous boot left it (etcd is up: ordered after it).
	out=""
	for _ in $(seq 20); do
		out=$(timeout 10 update_engine_reboot_manager lock status 2>&1) && break
		systemctl is-active --quiet etcd.service || { out="etcd.service is $(systemctl is-active etcd.service): $out"; break; }
		sleep 2
	done
	say "lock early $(echo "$out" | tr '\n' ' ')"
fi
exit 0
