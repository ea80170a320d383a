#!/bin/sh
# vmtest-events.service: echoes every line the Omaha dev server logs in this
# boot to the serial console, from where this boot's part of the log begins
# (setup.sh records it). It starts before update_engine, so an event a
# restart sends early in the boot (the 3/1 of a verified payload finished
# at once) reaches the host even when a reboot follows within a second.
off=$(cat /run/vmtest/omaha.offset 2>/dev/null || echo 0)
tail -c +$((off + 1)) -F /var/lib/vmtest/omaha.jsonl 2>/dev/null | while read -r l; do echo "VMTEST omaha $l"; done
