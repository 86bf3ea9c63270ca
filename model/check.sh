#!/usr/bin/env bash
# Runs spin on the lifecycle model: every LTL property under weak fairness
# (pan -a -f), with the safety assertions checked along the way. Exits non-zero
# if any property fails or spin reports an error. Usage: model/check.sh [TABLE]
# (TABLE replaces lifecycle_table.pml, for the planted-bug test).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/lifecycle.pml" "$work/"
cp "${1:-$here/lifecycle_table.pml}" "$work/lifecycle_table.pml"
cd "$work"
command -v spin >/dev/null || { echo "spin is not installed (Debian package spin)" >&2; exit 2; }
spin -o3 -a lifecycle.pml >spin.log 2>&1 || { cat spin.log >&2; exit 2; }
# Unoptimised: the verifier is 2 MB of C, which gcc -O2 takes over 30 s to
# compile, while the search (some 35,000 states a property) runs in under half
# a second either way. PAN_CFLAGS overrides (benches/check.rs times spin -O2).
# shellcheck disable=SC2086 # PAN_CFLAGS is a list of flags
gcc ${PAN_CFLAGS:--O0} -DNFAIR=3 -o pan pan.c
failed=0
for property in live_ready reload_ends drain_ends lost_not_ready; do
  out="$(./pan -a -f -m100000 -N "$property" 2>&1 || true)"
  errors="$(printf '%s\n' "$out" | sed -n 's/.*errors: \([0-9]*\).*/\1/p' | head -1)"
  states="$(printf '%s\n' "$out" | sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' | head -1)"
  if [ "$errors" = "0" ]; then
    echo "spin: $property holds ($states states)"
  else
    echo "spin: $property FAILS (errors: ${errors:-?})"
    printf '%s\n' "$out" | grep -E "assertion|violated|acceptance|pan:" | head -5
    if [ -f lifecycle.pml.trail ]; then
      echo "counter-example (events delivered: process, then next_state[st*N_EVENTS+EVENT], E_* in lifecycle_table.pml):"
      spin -t -p lifecycle.pml 2>/dev/null | grep -E "\[st = next_state" | sed 's/^ *[0-9]*:\s*//' | tail -25 || true
      rm -f lifecycle.pml.trail
    fi
    failed=1
  fi
done
exit "$failed"
