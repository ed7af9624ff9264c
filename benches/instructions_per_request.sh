#!/usr/bin/env bash
# Instructions per proxied request (callgrind), a figure that does not move with the host's noise:
# meshgate on benches/compare under valgrind, instrumentation on only while `hey` sends N requests
# at 64 connections through it to the bench's nginx upstream (CPU 1), then Ir total / N.
#
#   benches/instructions_per_request.sh [BIN] [N]     (defaults: target/release/meshgate, 19968)
#
# N is a multiple of 64 (hey sends N/64 per connection). Needs valgrind, hey and nginx
# (../shared/bench/setup.sh). Uses 127.0.0.1:18000 and :18080. Keeps the profile in
# $OUT (default /tmp/meshgate-callgrind.out) for callgrind_annotate.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BIN="${1:-$HERE/../target/release/meshgate}"
N="${2:-19968}"
OUT="${OUT:-/tmp/meshgate-callgrind.out}"
RUN="$(mktemp -d /tmp/instructions.XXXXXX)"
mkdir -p "$RUN/upstream"
sed "s#__RUNDIR__#$RUN#g" "$HERE/../../shared/bench/upstream/nginx.conf" > "$RUN/nginx.conf"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
taskset -c 1 nginx -p "$RUN" -c "$RUN/nginx.conf" -e stderr -g 'daemon off;' 2> "$RUN/nginx.log" &
pids+=($!)
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT" "$BIN" \
  --config "$HERE/compare" --bind 127.0.0.1 --no-watch --admin-address off --health-address off \
  --stats-address off --access-log-format off 2> "$RUN/meshgate.log" &
vg=$!
pids+=("$vg")
for _ in $(seq 300); do
  curl -s -o /dev/null http://127.0.0.1:18000/ && break
  sleep 0.2
done
callgrind_control -i on "$vg" > /dev/null
taskset -c 1 hey -n "$N" -c 64 http://127.0.0.1:18000/ | grep -E '\[200\]|Error' || true
callgrind_control -i off "$vg" > /dev/null
kill "$vg"
wait "$vg" || true
total=$(callgrind_annotate "$OUT" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "instructions: $total in all, $((total / N)) per request ($N requests)"
