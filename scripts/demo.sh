#!/usr/bin/env bash
# make demo: an A/B update end to end on a disk image, with no setup.
#
# It builds three versions of a small OS image, a disk with slots A and B
# (A installed and booted), a full payload for 2.0.0 and a delta 2.0.0→3.0.0,
# then runs the real daemon against the real Omaha dev server on 127.0.0.1
# and a private D-Bus bus. As root the disk is a loop device and the writes
# to the passive slot run under a cgroup I/O limit; otherwise it is an image
# file. Everything lives in $DEMO_DIR (default: a new /tmp/update-engine-demo.*).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
W=${DEMO_DIR:-$(mktemp -d /tmp/update-engine-demo.XXXXXX)}
mkdir -p "$W"/{srv,prefs,run,img}
SLOT_MB=160 IMG_MB=128
PIDS=()
LOOP=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$LOOP" ]; then partx -d "$LOOP" 2>/dev/null || true; losetup -d "$LOOP" 2>/dev/null || true; fi
}
trap cleanup EXIT

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }
need() { command -v "$1" >/dev/null || { echo "demo: $1 is missing: apt-get install -y $2 (or: sudo make deps)" >&2; exit 1; }; }
need mkfs.ext4 e2fsprogs; need dbus-daemon dbus; need partx util-linux

slots() { "$BIN/update_engine_client" --disk "$DISK" --slots | sed 's/^/   /'; }
# slot_bytes N: prints "start size" of partition N in bytes (works on image files, no root).
slot_bytes() { partx -g -b -o START,SECTORS -n "$1" "$IMGFILE" | awk '{print $1*512, $2*512}'; }
same_as() { # same_as PARTNUM IMAGE: is the slot's content the image, byte for byte?
  read -r start _ < <(slot_bytes "$1")
  local n; n=$(stat -c %s "$2")
  cmp -s -n "$n" <(tail -c +$((start + 1)) "$IMGFILE" | head -c "$n") "$2"
}
fail() { echo "demo: FAILED: $*; logs in $W/*.log" >&2; exit 1; }
expect_op() { # expect_op STATUS: the daemon's CURRENT_OP must be STATUS
  local op; op=$(client -status | sed -n 's/^CURRENT_OP=//p')
  [ "$op" = "$1" ] || fail "daemon status is $op, expected $1"
}
wait_for() { # wait_for SECONDS DESCRIPTION CMD...
  local t=$1 what=$2; shift 2
  for _ in $(seq $((t * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "demo: timed out waiting for $what; logs in $W/*.log" >&2; exit 1
}

bold "1. Three versions of an OS image (ext4, ${IMG_MB} MiB; each release changes ~7% of the files)"
src=/usr/lib/python3; [ -d "$src" ] || src=/usr/share/doc
scripts/mkimage.sh "$W/img/v1.img" $IMG_MB 1.0.0 "$src" "$W/img/tree1"
scripts/mkimage.sh "$W/img/v2.img" $IMG_MB 2.0.0 "$W/img/tree1" "$W/img/tree2"
scripts/mkimage.sh "$W/img/v3.img" $IMG_MB 3.0.0 "$W/img/tree2"
rm -rf "$W/img/tree1" "$W/img/tree2"
say "v1.img v2.img v3.img from $src"

bold "2. A disk with two system slots, USR-A and USR-B (GPT, Flatcar layout); 1.0.0 installed in A"
IMGFILE=$W/disk.img
go run ./internal/testenv/cmd/mktestdata -disk "$IMGFILE" -slot-size $((SLOT_MB << 20)) -fill-a "$W/img/v1.img"
DISK=$IMGFILE
IOLIMIT=()
# Without root the slots are ranges of an image file: nothing to mount, so
# the images' post-install step cannot run.
POSTINST=(--postinst -)
if [ "$(id -u)" = 0 ] && command -v losetup >/dev/null; then
  LOOP=$(losetup -f --show -P "$IMGFILE"); partx -a "$LOOP" 2>/dev/null || true
  DISK=$LOOP IOLIMIT=(--io-write-bps 64M) POSTINST=()
  say "running as root: the disk is the loop device $LOOP; writes to the passive slot are limited to 64 MiB/s"
else
  say "not root: the disk is the image file itself (partitions addressed by offset, no I/O limit)"
fi
slots

bold "3. Signed payloads: full 2.0.0 and delta 2.0.0 -> 3.0.0"
"$BIN/payload_generator" keygen --private "$W/key.pem" --public "$W/key.pub.pem" >/dev/null
"$BIN/payload_generator" keygen --private "$W/attacker.pem" --public "$W/attacker.pub.pem" >/dev/null
"$BIN/payload_generator" generate --new "$W/img/v2.img" --key "$W/key.pem" --version 2.0.0 -o "$W/full-2.0.0.payload"
"$BIN/payload_generator" generate --old "$W/img/v2.img" --source-version 2.0.0 --new "$W/img/v3.img" --key "$W/key.pem" --version 3.0.0 -o "$W/delta-3.0.0.payload"
"$BIN/payload_generator" generate --new "$W/img/v2.img" --key "$W/attacker.pem" --version 2.0.0 -o "$W/evil-2.0.0.payload"
for p in full-2.0.0 delta-3.0.0; do
  say "$(printf '%-12s %6d KiB' "$p" $(( $(stat -c %s "$W/$p.payload") / 1024 )))"
done
say "(the raw image is $((IMG_MB * 1024)) KiB)"

bold "4. An Omaha update server on 127.0.0.1 and a private D-Bus bus"
PORT=$((20000 + RANDOM % 20000))
"$BIN/omaha_devserver" --dir "$W/srv" --listen 127.0.0.1:$PORT --log "$W/omaha-events.jsonl" >"$W/omaha.log" 2>&1 &
PIDS+=($!)
BUS=unix:path=$W/bus
dbus-daemon --session --nofork --address="$BUS" >"$W/dbus.log" 2>&1 &
PIDS+=($!)
wait_for 10 "the Omaha server" bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT"
wait_for 10 "the D-Bus bus" test -S "$W/bus"
say "Omaha: http://127.0.0.1:$PORT/v1/update/   D-Bus: $BUS"

UE_PID=""
BOOTS=0
start_daemon() { # start_daemon BOOTED VERSION: each start is a (simulated) boot of its own
  BOOTS=$((BOOTS + 1))
  "$BIN/update_engine" --disk "$DISK" --booted "$1" --release-version "$2" --bus "$BUS" --boot-id "demo-boot-$BOOTS" \
    --server "http://127.0.0.1:$PORT/v1/update/" --pubkey "$W/key.pub.pem" \
    --prefs-dir "$W/prefs" --run-dir "$W/run" --reboot-required-file "$W/run/reboot-required" \
    --auto-check=false --health-delay 1s "${IOLIMIT[@]}" "${POSTINST[@]}" >>"$W/update_engine.log" 2>&1 &
  UE_PID=$!; PIDS+=($UE_PID)
  wait_for 15 "update_engine on D-Bus" "$BIN/update_engine_client" --bus "$BUS" --connect-tries 1 -status
}
stop_daemon() { kill "$UE_PID"; wait "$UE_PID" 2>/dev/null || true; }
client() { "$BIN/update_engine_client" --bus "$BUS" "$@"; }

bold "5. The daemon starts on slot A, version 1.0.0"
start_daemon A 1.0.0
client -status | sed 's/^/   /'

bold "6. A tampered payload (signed with the wrong key) is offered: it must be refused"
cp "$W/evil-2.0.0.payload" "$W/evil-2.0.0.payload.json" "$W/srv/"
client -update --poll-interval 1s --progress plain >/dev/null || true
grep -m1 -iE 'error|fail' "$W/update_engine.log" | sed 's/^/   daemon: /' || true
client -status | grep CURRENT_OP | sed 's/^/   /'
slots
rm -f "$W/srv/evil-2.0.0.payload"*
same_as 3 "$W/img/v1.img" || fail "slot A changed"
[ "$("$BIN/update_engine_client" --disk "$DISK" --slots | awk '$3=="USR-A"{print $7}')" = yes ] || fail "the GPT was flipped"
say "refused before writing: slot A still holds 1.0.0 byte for byte and still boots next"

bold "7. The real update to 2.0.0 (full payload) is offered; update_engine_client -update"
cp "$W/full-2.0.0.payload" "$W/full-2.0.0.payload.json" "$W/srv/"
client -update --poll-interval 1s
expect_op UPDATE_STATUS_UPDATED_NEED_REBOOT
client -status | sed 's/^/   /'
say "GPT after the update: B has the highest priority, one try, not yet successful"
slots

bold "8. Reboot (simulated): the firmware picks the slot the way GRUB gptprio does"
stop_daemon
client --disk "$DISK" --simulate-boot | sed 's/^/   /'
same_as 4 "$W/img/v2.img" || fail "slot B does not hold 2.0.0"
say "slot B holds exactly 2.0.0"
start_daemon B 2.0.0
say "the daemon on B passes its health gate and marks B good (successful=1, tries=0)"
wait_for 20 "slot B marked good" bash -c "'$BIN/update_engine_client' --disk '$DISK' --slots | awk '\$1==\"B\" && \$6==1' | grep -q B"
slots

bold "9. Next release 3.0.0 as a delta (only what changed travels); update again"
cp "$W/delta-3.0.0.payload" "$W/delta-3.0.0.payload.json" "$W/srv/"
client -update --poll-interval 1s
expect_op UPDATE_STATUS_UPDATED_NEED_REBOOT
slots
stop_daemon
client --disk "$DISK" --simulate-boot | sed 's/^/   /'
same_as 3 "$W/img/v3.img" || fail "slot A does not hold 3.0.0"
say "slot A now holds exactly 3.0.0, built from B by the delta"
same_as 4 "$W/img/v2.img" || fail "slot B changed during the delta update"
say "slot B (2.0.0) was only read, never written: the fallback is intact"

bold "10. What the update server saw"
say "(type/result: 13/1 download started, 14/1 finished, 3/1 applied, 3/2 booted the new version, 3/0 error+code)"
grep '"events":\[{' "$W/omaha-events.jsonl" | sed -E 's/.*"version":"([^"]*)".*"eventtype":([0-9]+),"eventresult":([0-9]+)(,"errorcode":(-?[0-9]+))?(,"previousversion":"([^"]*)")?.*/   client \1: event \2\/\3 \5 \7/' || true
bold "Done. Work files and logs: $W"
