#!/bin/sh
# The guest half of scenario 6 (package_test.go), in place of harness.sh:
# install the Debian package `make deb` built with dpkg -i on this host, as
# an administrator would, and report what systemd and the binaries say.
say() { echo "VMTEST $*"; }
. /usr/share/flatcar/release
booted=$(sed -n 's/.*usr=PARTUUID=\([0-9a-f-]*\).*/\1/p' /proc/cmdline)
say "boot version=$FLATCAR_RELEASE_VERSION partuuid=$booted bootid=$(cat /proc/sys/kernel/random/boot_id)"
until update_engine_client -status >/dev/null 2>&1; do sleep 1; done
# The image runs the units already (enabled in /usr): stop them, so that
# only the package's postinst can start them again.
systemctl stop update-engine-reboot-manager.service update-engine.service
# The slot is mounted read-only, as on Flatcar; this throwaway disk's /usr
# takes the package.
mount -o remount,rw /usr || { say "pkg error: cannot remount /usr read-write"; sleep infinity; }
# The image's ROOT already holds /etc/default/update-engine (a file the
# package ships as a conffile): dpkg asks; answer as an administrator who
# keeps their own (the default answer).
if out=$(dpkg --force-confdef --force-confold -i /run/vmtest/payloads/update-engine.deb 2>&1 </dev/null); then
	say "pkg installed"
else
	say "pkg dpkg-failed $(echo "$out" | tr '\n' ' ')"
fi
for u in update-engine.service update-engine-reboot-manager.service; do
	for _ in $(seq 60); do systemctl is-active --quiet "$u" && break; sleep 1; done
	link=no
	[ -L "/etc/systemd/system/multi-user.target.wants/$u" ] && link=yes
	say "pkg unit $u enabled=$(systemctl is-enabled "$u") active=$(systemctl is-active "$u") wants-link=$link"
done
# The package's client by its path: the image has its own in /usr/bin,
# which this shell has already found (and remembers).
say "pkg version $(/usr/sbin/update_engine_client --version 2>&1)"
until /usr/sbin/update_engine_client -status >/dev/null 2>&1; do sleep 1; done
say "pkg status $(/usr/sbin/update_engine_client -status 2>&1 | tr '\n' ' ')"
say "pkg dpkg $(dpkg-query -W -f='${Status} ${Version}' update-engine 2>&1)"
say "pkg done"
sleep infinity
