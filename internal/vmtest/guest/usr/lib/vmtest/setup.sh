#!/bin/sh
# vmtest-setup.service: install the scenario's configuration from /dev/vdb.
set -eu
mkdir -p /run/vmtest/payloads /var/lib/vmtest
mountpoint -q /run/vmtest/payloads || mount -o ro /dev/vdb /run/vmtest/payloads
# Where this boot's part of the Omaha server's log begins: events.sh
# echoes from there.
stat -c %s /var/lib/vmtest/omaha.jsonl 2>/dev/null >/run/vmtest/omaha.offset || echo 0 >/run/vmtest/omaha.offset
mkdir -p /etc/flatcar
cp /run/vmtest/payloads/update.conf /etc/flatcar/update.conf
if grep -q '^REBOOT_STRATEGY=etcd-lock' /etc/flatcar/update.conf; then
	# etcd (Debian etcd-server) on this host; update-engine-reboot-manager
	# is ordered after it (update-engine-reboot-manager.service.d/vmtest.conf).
	systemctl start --no-block etcd.service
fi
