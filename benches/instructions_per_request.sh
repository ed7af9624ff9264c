#!/usr/bin/env bash
# Instructions per proxied request (callgrind), a figure that does not move with the host's noise:
# the proxy under valgrind, instrumentation on only while `hey` sends N requests at 64
# connections through it to the bench's nginx upstream (CPU 1), then Ir total / N. Then the same
# load without valgrind under `perf stat -e raw_syscalls:sys_enter`: system calls per request.
# Both are user-space and kernel-entry counts, not time, so one proxy can be set against another
# on a noisy host.
#
#   benches/instructions_per_request.sh [BIN] [N]     (defaults: target/release/meshgate, 19968)
#   CONNS=512 ...: another concurrency (N must be a multiple of it)
#   CALLGRIND_OPTS="--cache-sim=yes --D1=32768,8,64 --LL=524288,8,64": simulated cache misses
#                  per request as well (here an L2-sized last level)
#   TARGET=haproxy benches/instructions_per_request.sh   (or nginx: the reference proxies of
#                                                         ../shared/bench/proxies, one thread)
#
# N is a multiple of 64 (hey sends N/64 per connection). Needs valgrind, perf, hey, nginx and
# haproxy (../shared/bench/setup.sh). Uses 127.0.0.1:18000/18002/18003 and :18080. Keeps the
# profile in $OUT (default /tmp/<target>-callgrind.out) for callgrind_annotate.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
SHARED="$HERE/../../shared/bench"
TARGET="${TARGET:-meshgate}"
BIN="${1:-$HERE/../target/release/meshgate}"
N="${2:-19968}"
CONNS="${CONNS:-64}"
OUT="${OUT:-/tmp/$TARGET-callgrind.out}"
RUN="$(mktemp -d /tmp/instructions.XXXXXX)"
mkdir -p "$RUN/upstream" "$RUN/nginx"
sed "s#__RUNDIR__#$RUN#g" "$SHARED/upstream/nginx.conf" > "$RUN/upstream/nginx.conf"
case "$TARGET" in
  meshgate)
    PORT=18000
    CMD=("$BIN" --config "$HERE/compare" --bind 127.0.0.1 --no-watch --admin-address off
      --health-address off --stats-address off --access-log-format off) ;;
  haproxy)
    PORT=18003
    CMD=(haproxy -f "$SHARED/proxies/haproxy.cfg" -db) ;;
  nginx)
    PORT=18002
    sed "s#__RUNDIR__#$RUN#g" "$SHARED/proxies/nginx.conf" > "$RUN/nginx/nginx.conf"
    CMD=(nginx -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e stderr -g 'daemon off; master_process off;') ;;
  *) echo "TARGET must be meshgate, haproxy or nginx" >&2; exit 2 ;;
esac
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
taskset -c 1 nginx -p "$RUN/upstream" -c "$RUN/upstream/nginx.conf" -e stderr -g 'daemon off;' 2> "$RUN/upstream.log" &
pids+=($!)

# Waits (bounded) until the proxy answers.
ready() {
  for _ in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && return 0
    sleep 0.2
  done
  echo "proxy did not answer on :$PORT" >&2
  exit 1
}

# 1. Instructions, under callgrind.
# shellcheck disable=SC2086 # CALLGRIND_OPTS is a list of options
taskset -c 0 valgrind --tool=callgrind --instr-atstart=no ${CALLGRIND_OPTS:-} --callgrind-out-file="$OUT" "${CMD[@]}" \
  2> "$RUN/proxy.log" &
vg=$!
pids+=("$vg")
ready
callgrind_control -i on "$vg" > /dev/null
taskset -c 1 hey -n "$N" -c "$CONNS" "http://127.0.0.1:$PORT/" | grep -E '\[200\]|Error' || true
callgrind_control -i off "$vg" > /dev/null
kill "$vg"
wait "$vg" || true
total=$(callgrind_annotate "$OUT" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$TARGET instructions: $total in all, $((total / N)) per request ($N requests)"
if [[ "${CALLGRIND_OPTS:-}" == *cache-sim=yes* ]]; then
  # Simulated cache misses per request (instruction L1, data L1 read/write, last level).
  callgrind_annotate "$OUT" 2>/dev/null | awk -v n="$N" '
    /^Events shown:/ { for (i = 3; i <= NF; i++) ev[i - 2] = $i }
    /PROGRAM TOTALS/ { for (i = 1; i <= NF; i += 2) { gsub(",", "", $i); k = (i + 1) / 2; if (ev[k] != "") printf "%s %.1f  ", ev[k], $i / n } print "(per request)" }'
fi

# 2. System calls, natively.
taskset -c 0 "${CMD[@]}" 2> "$RUN/proxy-native.log" &
proxy=$!
pids+=("$proxy")
ready
perf stat -e raw_syscalls:sys_enter -p "$proxy" -x, -o "$RUN/perf.csv" &
perf=$!
sleep 1
taskset -c 1 hey -n "$N" -c "$CONNS" "http://127.0.0.1:$PORT/" > /dev/null
kill -INT "$perf"
wait "$perf" || true
calls=$(awk -F, '/raw_syscalls:sys_enter/ {print $1}' "$RUN/perf.csv")
echo "$TARGET system calls: $calls in all, $(awk -v c="$calls" -v n="$N" 'BEGIN {printf "%.2f", c / n}') per request"
