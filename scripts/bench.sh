#!/usr/bin/env bash
# Runs every benchmark once and collects the `bench <name> <value> <unit>` lines.
set -euo pipefail
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run '^$' -bench . -benchtime 1x -timeout 60m -v ./... 2>&1 | tee "$out" | grep -E '^(bench |ok|FAIL|---)' || true
echo
echo "== figures =="
grep '^bench ' "$out" || { echo "no figures"; exit 1; }
# Figures from a loaded host are not comparable (a shared 2-core machine
# at load 3 halves speed ratios): say so.
awk '{for (i = 1; i <= NF; i++) if ($i ~ /^load1=/) { l = substr($i, 7); if (l + 0 > 1.5) n++ }}
     END { if (n) printf "WARNING: %d figures measured at load1 > 1.5: not comparable with a quiet run\n", n }' "$out"
! grep -q '^FAIL' "$out"
