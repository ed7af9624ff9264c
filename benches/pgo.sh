#!/usr/bin/env bash
# A profile-guided (PGO) release build of meshgate. An instrumented build serves a training load
# through benches/compare, its profile is merged, and the release build is made again with it:
# LLVM then inlines, lays out and splits hot from cold code by what ran. On this project's
# bench host that is about a fifth fewer instructions per proxied request (37.1k -> 28.7k at 512
# connections) and ~6% more requests/s (benches/RESULTS.md, "2026-12-04 (third session)").
#
#   benches/pgo.sh                      # -> target/pgo/meshgate.profdata, target/pgo/release/meshgate
#   PROFDATA=FILE benches/pgo.sh        # skip the training: build with a merged profile
#   MESHGATE_PGO=target/pgo/meshgate.profdata docker/build.sh   # the image, built with it
#
# Training load (about 20 s): HTTP/1.1 GETs at 64 and at 512 connections (wrk), POSTs with a
# 2 KB body (hey), h2c with 10 streams per connection (h2load), all to the bench's nginx
# upstream. A path the training does not run is laid out as cold: add to the load what matters.
#
# Needs llvm-profdata of rustc's LLVM major version (`rustc -vV`; Debian: apt-get install
# llvm-NN), and nginx, wrk, hey and h2load (../shared/bench/setup.sh). Uses 127.0.0.1:18000 and
# :18080. Two release builds: ~10 min on 2 cores.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="$ROOT/../shared/bench"
OUT="$ROOT/target/pgo"
mkdir -p "$OUT"

major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
profdata_tool="${LLVM_PROFDATA:-}"
if [ -z "$profdata_tool" ]; then
  for c in "llvm-profdata-$major" "/usr/lib/llvm-$major/bin/llvm-profdata"; do
    if command -v "$c" > /dev/null; then profdata_tool="$c"; break; fi
  done
fi

profdata="${PROFDATA:-}"
if [ -z "$profdata" ]; then
  if [ -z "$profdata_tool" ]; then
    echo "pgo.sh: no llvm-profdata for LLVM $major (set LLVM_PROFDATA, or apt-get install llvm-$major)" >&2
    exit 2
  fi
  raw="$OUT/raw"
  rm -rf "$raw"
  mkdir -p "$raw"
  echo "pgo.sh: instrumented build"
  RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$raw/build" \
    cargo build --release --bin meshgate --target-dir "$OUT/gen" --quiet

  run="$(mktemp -d /tmp/pgo.XXXXXX)"
  pids=()
  cleanup() { for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done; rm -rf "$run"; }
  trap cleanup EXIT
  mkdir -p "$run/upstream"
  sed "s#__RUNDIR__#$run#g" "$SHARED/upstream/nginx.conf" > "$run/upstream/nginx.conf"
  taskset -c 1 nginx -p "$run/upstream" -c "$run/upstream/nginx.conf" -e stderr -g 'daemon off;' \
    2> "$run/upstream.log" &
  pids+=($!)
  # The profile is written when the process exits: SIGTERM, no drain.
  LLVM_PROFILE_FILE="$raw/meshgate-%p.profraw" taskset -c 0 "$OUT/gen/release/meshgate" \
    --config "$HERE/compare" --bind 127.0.0.1 --no-watch --admin-address off \
    --health-address off --stats-address off --access-log-format off --drain-duration 0 \
    2> "$run/proxy.log" &
  proxy=$!
  pids+=("$proxy")
  for _ in $(seq 100); do
    curl -s -o /dev/null http://127.0.0.1:18000/ && break
    sleep 0.1
  done
  echo "pgo.sh: training"
  taskset -c 1 wrk -t1 -c64 -d4s http://127.0.0.1:18000/ > /dev/null
  taskset -c 1 wrk -t1 -c512 -d4s http://127.0.0.1:18000/ > /dev/null
  head -c 2000 /dev/urandom > "$run/body"
  taskset -c 1 hey -n 4000 -c 32 -m POST -D "$run/body" http://127.0.0.1:18000/ > /dev/null
  taskset -c 1 h2load -n 20000 -c 16 -m 10 http://127.0.0.1:18000/ > /dev/null
  kill -TERM "$proxy"
  wait "$proxy" || true
  profdata="$OUT/meshgate.profdata"
  "$profdata_tool" merge -o "$profdata" "$raw"/meshgate-*.profraw
  echo "pgo.sh: profile $profdata"
fi

echo "pgo.sh: optimised build"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$(realpath "$profdata")" \
  cargo build --release --bin meshgate --target-dir "$OUT" --quiet
echo "pgo.sh: $OUT/release/meshgate"
