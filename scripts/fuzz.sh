#!/usr/bin/env bash
# Runs each fuzz target for a while (default 30s each): scripts/fuzz.sh 5m
set -euo pipefail
t=${1:-30s}
grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
  dir=$(dirname "$f")
  for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | cut -d' ' -f2); do
    echo "== $dir $fn ($t)"
    go test -run "^$" -fuzz "^${fn}\$" -fuzztime "$t" -fuzzminimizetime 5s "$dir"
  done
done
