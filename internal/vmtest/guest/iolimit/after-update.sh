#!/bin/sh
# The I/O limit scenario (iolimit_test.go), run by harness.sh once the update
# is applied under the write limit: the limit's cgroup as the running daemon
# has it, the limit in update_engine_client -status --json, `systemctl stop`,
# what is left of the cgroups afterwards, then the pkg/cgroup and
# internal/daemon I/O tests (built on the host) as transient units with
# Delegate=io, i.e. alone in a cgroup that offers io.
say() { echo "VMTEST $*"; }
svc=/sys/fs/cgroup/system.slice/update-engine.service
pid=$(systemctl show -p MainPID --value update-engine.service)
say "iolimit running cgroup=$(sed -n 's/^0:://p' "/proc/$pid/cgroup") subtree=[$(cat $svc/cgroup.subtree_control)] io.max=[$(cat $svc/update_engine/io.max 2>&1)]"
say "iolimit json $(update_engine_client -status --json 2>&1)"
systemctl stop update-engine.service
say "iolimit stopped $(journalctl -b -u update-engine.service -o cat | grep -E 'I/O limit (released|: releasing)' | tail -n1)"
say "iolimit left [$(find /sys/fs/cgroup -name update_engine -o -name 'update-engine.service' | tr '\n' ' ')]"
insmod /run/vmtest/payloads/loop.ko 2>/dev/null
for t in cgroup daemon; do
	case $t in
	cgroup) run='TestLimitOnLoopDevice|TestV2SharedCgroup' ;;
	daemon) run='TestIOLimit|TestIOLimitUnapplied' ;;
	esac
	{
		systemd-run --quiet --wait --pipe --collect -p Delegate=io -p WorkingDirectory=/tmp \
			"/run/vmtest/payloads/$t.test" -test.v -test.count=1 -test.run "^($run)\$"
		echo "exit=$?"
	} 2>&1 </dev/null | sed "s/^/VMTEST gotest $t: /"
done
say "iolimit done"
