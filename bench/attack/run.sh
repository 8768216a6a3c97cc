#!/usr/bin/env bash
# Issue 13 attack reproductions, bounded and loopback only (each scenario stops by itself;
# the whole run takes a few minutes). Prints Markdown tables for bench/RESULTS.md.
#
#   bash bench/attack/run.sh            # everything, release build
#   bash bench/attack/run.sh idle-h2    # one network scenario (see bench/attack/attack.rs)
#
# Network scenarios: bench/attack/attack.rs starts `tether serve --standalone` with the chart's
# default budgets per scenario, attacks from 127.0.0.1 and measures valid reviews sent from
# 127.0.0.2 while the attack runs, and the server's peak RSS (VmHWM).
# Offline scenarios: inputs from gen_offline.py, timed with /usr/bin/time (elapsed, max RSS).
set -euo pipefail
cd "$(dirname "$0")/../.."
nice -n 10 cargo build --release --locked --bin tether --example attack
TETHER=target/release/tether
ulimit -n 20000 2>/dev/null || true

if [ "${1:-}" != "offline" ]; then
  nice -n 5 target/release/examples/attack "$TETHER" "$@"
fi
[ $# -gt 0 ] && [ "$1" != "offline" ] && exit 0

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 bench/attack/gen_offline.py "$dir" >/dev/null
echo
echo "| offline input | size | command | exit | elapsed s | max RSS MiB | first line of output |"
echo "| --- | ---: | --- | ---: | ---: | ---: | --- |"
run() {
  local name=$1; shift
  local size; size=$(stat -c %s "$dir/$name")
  local out rc
  set +e
  out=$( { /usr/bin/time -f "TIME %e %M" timeout 120 "$@" >/dev/null; } 2>&1 )
  rc=$?
  set -e
  local t; t=$(grep '^TIME' <<<"$out" | tail -1)
  local msg; msg=$(grep -v '^TIME' <<<"$out" | head -1 | cut -c1-150 || true)
  printf '| %s | %s | %s | %s | %s | %.1f | %s |\n' "$name" "$size" "${*:2:2}" "$rc" \
    "$(awk '{print $2}' <<<"$t")" "$(awk '{print $3/1024}' <<<"$t")" "$msg"
}
run nested.yaml "$TETHER" check -f "$dir/nested.yaml"
run rbac-nested.yaml "$TETHER" review -f bench/fixtures/attached-create.json --rbac-file "$dir/rbac-nested.yaml"
run rbac-wide.yaml "$TETHER" review -f bench/fixtures/attached-create.json --rbac-file "$dir/rbac-wide.yaml"
run rbac-chain.yaml "$TETHER" review -f bench/fixtures/attached-create.json --rbac-file "$dir/rbac-chain.yaml"
run review-30mb.json "$TETHER" review -f "$dir/review-30mb.json"
