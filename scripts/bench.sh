#!/usr/bin/env bash
# Runs every benchmark once and collects the `bench <name> <value> <unit>` lines.
set -euo pipefail
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run '^$' -bench . -benchtime 1x -timeout 60m -v ./... 2>&1 | tee "$out" | grep -E '^(bench |ok|FAIL|---)' || true
echo
echo "== figures =="
grep '^bench ' "$out" || { echo "no figures"; exit 1; }
! grep -q '^FAIL' "$out"
