#!/usr/bin/env bash
# Container tests: the image (docker/build.sh) against the real Docker engine.
#
#   docker/test.sh            # tests meshgate:latest (MESHGATE_IMAGE to change); build it first
#
# Needs a Docker engine (skipped, saying so, without one), curl, python3, and for the rolling
# restart haproxy (installed with apt-get if missing and apt-get is usable; that test is skipped,
# saying so, otherwise). Everything it creates (containers, one network, temp dirs, haproxy) is
# removed by id/pid on exit, failed or not. No sleeps as synchronisation: every wait polls a real
# condition (readiness endpoint, container state, haproxy's view) under a deadline.
# Last line: `container tests: N passed, N failed`.
set -uo pipefail
cd "$(dirname "$0")/.."

IMAGE="${MESHGATE_IMAGE:-meshgate:latest}"
BIN=/usr/local/bin/meshgate
passed=0
failed=0
# What to clean up, one id/path per line (files: the tests run in subshells).
STATE=$(mktemp -d)
track() { echo "$2" >>"$STATE/$1"; }

summary() { echo "container tests: $passed passed, $failed failed"; }

if ! docker info >/dev/null 2>&1; then
  echo "container tests SKIPPED: no Docker engine reachable (docker info failed); they need one"
  summary
  exit 0
fi
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "container tests: image $IMAGE not found: run docker/build.sh first" >&2
  failed=1
  summary
  exit 1
fi

each() { [ -f "$STATE/$1" ] && cat "$STATE/$1"; }
cleanup() {
  local x
  for x in $(each pids); do kill "$x" 2>/dev/null; done
  for x in $(each containers); do docker rm -f "$x" >/dev/null 2>&1; done
  for x in $(each networks); do docker network rm "$x" >/dev/null 2>&1; done
  for x in $(each tmpdirs); do rm -rf "$x"; done
  rm -rf "$STATE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "    $*"; }
fail() { echo "    FAILED: $*"; exit 1; }
# Each test runs in a subshell with errexit: a failing command or `fail` ends that test only.
run_test() {
  local name=$1 rc
  local t0=$SECONDS
  echo "--- $name"
  ( set -e; "$name" )
  rc=$?
  if [ "$rc" = 0 ]; then
    echo "ok $name ($((SECONDS - t0)) s)"
    passed=$((passed + 1))
  else
    echo "FAIL $name ($((SECONDS - t0)) s)"
    failed=$((failed + 1))
  fi
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND (every 100 ms) until it succeeds.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$end" ]; then
      fail "timed out after ${secs}s waiting for $what"
    fi
    sleep 0.1
  done
}

status_of() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1"; }
body_of() { curl -sf -m 2 "$1"; }
is_status() { [ "$(status_of "$2")" = "$1" ]; }
container_state() { docker inspect -f "$1" "$2"; }
not_running() { [ "$(docker inspect -f '{{.State.Running}}' "$1")" = false ]; }

# A copy of config/ the container user (65532) can read.
config_copy() {
  local d
  d=$(mktemp -d)
  track tmpdirs "$d"
  cp config/*.yaml "$d/"
  chmod 755 "$d"
  chmod 644 "$d"/*.yaml
  echo "$d"
}

# run_gw ARGS...: docker run -d, remembers the id for cleanup, prints it.
run_gw() {
  local id
  id=$(docker run -d "$@") || return 1
  track containers "$id"
  echo "$id"
}

published() {
  local p
  p=$(docker port "$1" "$2/tcp")
  grep -m1 '^127.0.0.1:' <<<"$p"
}

# ---------------------------------------------------------------------------------------------

test_image_is_small_static_and_non_root() {
  local size user layers files extra
  size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
  log "image $IMAGE: $size bytes"
  [ "$size" -lt 15000000 ] || fail "image is $size bytes, over 15 MB"
  user=$(docker image inspect -f '{{.Config.User}}' "$IMAGE")
  [ "$user" = "65532:65532" ] || fail "user is '$user'"
  layers=$(docker image inspect -f '{{len .RootFS.Layers}}' "$IMAGE")
  [ "$layers" = 1 ] || fail "$layers layers, expected 1 (scratch + the binary)"
  # The filesystem holds the binary and nothing else (Docker adds its own mount points).
  local id
  id=$(docker create "$IMAGE")
  track containers "$id"
  files=$(docker export "$id" | tar -t | sort)
  extra=$(echo "$files" | grep -v -x -E '\.dockerenv|dev/.*|proc/|sys/|etc/|etc/(hosts|hostname|resolv\.conf|mtab)|usr/|usr/local/|usr/local/bin/|usr/local/bin/meshgate' || true)
  [ -z "$extra" ] || fail "unexpected files in the image: $extra"
  grep -qx 'usr/local/bin/meshgate' <<<"$files" || fail "no usr/local/bin/meshgate"
  docker rm "$id" >/dev/null
}

# The README's command (with an ephemeral loopback host port instead of 8080: the machine is
# shared), plus the hardening the Kubernetes manifests use: read-only root, no capabilities.
test_docker_run_serves_the_example_config() {
  local id web health
  id=$(run_gw --rm -p 127.0.0.1::8080 -p 127.0.0.1::15021 --read-only --cap-drop ALL \
    -v "$PWD/config:/etc/meshgate:ro" "$IMAGE")
  web=$(published "$id" 8080)
  health=$(published "$id" 15021)
  wait_for 20 "readiness 200" is_status 200 "http://$health/healthz/ready"
  [ "$(body_of "http://$web/hello")" = "hello from meshgate" ] || fail "/hello"
  [[ "$(body_of "http://$web/api/orders?id=7")" == "backend answered"* ]] || fail "/api/orders (upstream pool)"
  [ "$(status_of "http://$web/nope")" = 404 ] || fail "/nope is not 404"
  # The HEALTHCHECK (meshgate health inside the container) turns the container healthy.
  local out
  out=$(docker exec "$id" "$BIN" health) || fail "meshgate health failed: $out"
  log "$out"
  wait_for 30 "docker health status healthy" \
    bash -c "[ \"\$(docker inspect -f '{{.State.Health.Status}}' $id)\" = healthy ]"
  log "health: $(docker inspect -f '{{.State.Health.Status}} ({{(index .State.Health.Log 0).Output}})' "$id" | tr -d '\n')"
  docker stop "$id" >/dev/null
}

test_meshgate_health_fails_when_nothing_listens() {
  # The probe itself: nothing on the port → exit 1 (no readiness without a gateway).
  local out rc=0
  out=$(docker run --rm --entrypoint "$BIN" "$IMAGE" health --address 127.0.0.1:15021 --timeout 1) || rc=$?
  log "$out"
  [ "$rc" = 1 ] || fail "exit $rc, expected 1"
}

# The static glibc binary resolves names (hickory, /etc/resolv.conf → Docker's DNS): the example's
# backend turned into a DNS ServiceEntry naming another container on a test network.
test_static_binary_resolves_upstream_names_through_dns() {
  local net name dir id web health
  net=$(docker network create "meshgate-test-$$-dns-$RANDOM")
  track networks "$net"
  name="meshgate-test-$$-backend-$RANDOM"
  run_gw --network "$net" --name "$name" --read-only --cap-drop ALL \
    -v "$PWD/config:/etc/meshgate:ro" "$IMAGE" >/dev/null
  dir=$(config_copy)
  sed -i "s/resolution: STATIC/resolution: DNS/; s/address: 127.0.0.1/address: $name/" "$dir/backend-service.yaml"
  id=$(run_gw --network "$net" -p 127.0.0.1::8080 -p 127.0.0.1::15021 --read-only --cap-drop ALL \
    -v "$dir:/etc/meshgate:ro" "$IMAGE")
  web=$(published "$id" 8080)
  health=$(published "$id" 15021)
  wait_for 20 "readiness 200" is_status 200 "http://$health/healthz/ready"
  # The backend container may still be starting: poll until it answers through the DNS cluster.
  wait_for 20 "/api/orders answered by the other container" \
    bash -c "curl -sf -m 2 http://$web/api/orders | grep -q 'backend answered'"
  log "resolved $name through Docker's DNS; /api/orders answered by it"
}

test_editing_the_mounted_folder_hot_reloads_and_docker_stop_drains() {
  local dir id web health t0 stop_pid code elapsed
  dir=$(config_copy)
  id=$(run_gw -p 127.0.0.1::8080 -p 127.0.0.1::15021 --read-only --cap-drop ALL \
    -v "$dir:/etc/meshgate:ro" "$IMAGE")
  web=$(published "$id" 8080)
  health=$(published "$id" 15021)
  wait_for 20 "readiness 200" is_status 200 "http://$health/healthz/ready"
  [ "$(body_of "http://$web/hello")" = "hello from meshgate" ] || fail "/hello before the edit"
  # Edit a file in the mounted folder (in place, as an editor or a ConfigMap update would).
  sed -i 's/hello from meshgate/hello from the edited config/' "$dir/shop.yaml"
  wait_for 15 "the edited /hello" \
    bash -c "[ \"\$(curl -sf -m 2 http://$web/hello)\" = 'hello from the edited config' ]"
  # (Logs read whole, then searched: `cmd | grep -q` under pipefail fails when grep quits early.)
  local logs
  logs=$(docker logs "$id" 2>&1)
  grep -q 'config reloaded' <<<"$logs" || fail "no 'config reloaded' log line"
  log "$(grep -m1 'config reloaded' <<<"$logs" | cut -c1-200)"

  # docker stop: readiness fails at once while requests are still served, then exit 0 in grace.
  t0=$(date +%s.%N)
  docker stop -t 20 "$id" >/dev/null &
  stop_pid=$!
  wait_for 3 "readiness 503 after docker stop" is_status 503 "http://$health/healthz/ready"
  [ "$(body_of "http://$web/hello")" = "hello from the edited config" ] || fail "not serving while draining"
  log "draining: readiness 503, /hello still 200"
  wait "$stop_pid" || fail "docker stop failed"
  elapsed=$(echo "$(date +%s.%N) - $t0" | bc)
  code=$(container_state '{{.State.ExitCode}}' "$id")
  log "exited with $code after ${elapsed}s (drain-duration 5 s, grace 20 s)"
  [ "$code" = 0 ] || fail "exit code $code (137 would mean killed at the end of the grace period)"
  [ "$(echo "$elapsed < 20" | bc)" = 1 ] || fail "took ${elapsed}s"
  [ "$(echo "$elapsed >= 4.5" | bc)" = 1 ] || fail "exited after ${elapsed}s, before the drain duration"
  logs=$(docker logs "$id" 2>&1)
  grep -q 'draining' <<<"$logs" || fail "no draining log line"
}

# ---------------------------------------------------------------------------------------------
# Rolling restart: three containers on a Docker network behind haproxy on the host, which
# health-checks /healthz/ready on each like a cloud load balancer; bounded load through haproxy
# while the containers are restarted (then replaced with a new config) one by one.

HAPROXY_PORT=
STATS_PORT=
NET=
IPS=()
GW=()

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ensure_haproxy() {
  command -v haproxy >/dev/null && return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing haproxy with apt-get"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy) >/dev/null 2>&1
  fi
  command -v haproxy >/dev/null
}

# haproxy's view of server $1: UP, DOWN, ... (from its stats CSV).
server_status() {
  curl -sf -m 2 "http://127.0.0.1:$STATS_PORT/stats;csv" | awk -F, -v s="$1" '$1 == "gw" && $2 == s { print $18 }'
}
server_is() { [ "$(server_status "$1")" = "$2" ] || [[ "$(server_status "$1")" == "$2 "* ]]; }

setup_lb() {
  local sub i cfg dir=$1
  for _ in 1 2 3 4 5; do
    sub="172.$((RANDOM % 16 + 16)).$((RANDOM % 256))"
    NET=$(docker network create --subnet "$sub.0/24" "meshgate-test-$$-$RANDOM" 2>/dev/null) && break
    NET=
  done
  [ -n "$NET" ] || fail "cannot create a Docker network"
  track networks "$NET"
  for i in 1 2 3; do
    IPS[$i]="$sub.$((10 + i))"
    GW[$i]=$(run_gw --network "$NET" --ip "${IPS[$i]}" --read-only --cap-drop ALL \
      -v "$dir:/etc/meshgate:ro" "$IMAGE")
  done
  HAPROXY_PORT=$(free_port)
  STATS_PORT=$(free_port)
  cfg=$(mktemp -d)
  track tmpdirs "$cfg"
  cat >"$cfg/haproxy.cfg" <<CFG
global
  maxconn 2000
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  # haproxy's defaults: retry only when the connection to a server cannot be made.
  retries 3
frontend web
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend gw
frontend stats
  bind 127.0.0.1:$STATS_PORT
  stats enable
  stats uri /stats
backend gw
  balance roundrobin
  option httpchk GET /healthz/ready
  http-check expect status 200
  # A cloud load balancer's health check, made quick: every 500 ms, 2 failures → out, 2 → in.
  default-server check port 15021 inter 500ms fall 2 rise 2
  server gw1 ${IPS[1]}:8080
  server gw2 ${IPS[2]}:8080
  server gw3 ${IPS[3]}:8080
CFG
  haproxy -f "$cfg/haproxy.cfg" -db >"$cfg/haproxy.log" 2>&1 &
  track pids $!
  for i in 1 2 3; do
    wait_for 30 "haproxy sees gw$i UP" server_is "gw$i" UP
  done
}

# start_load: bounded load through haproxy in the background; results in $LOAD_OUT.
start_load() {
  LOAD_DIR=$(mktemp -d)
  track tmpdirs "$LOAD_DIR"
  LOAD_OUT="$LOAD_DIR/out.json"
  python3 docker/loadgen.py "127.0.0.1:$HAPROXY_PORT" /hello --threads 2 \
    --max-requests 5000000 --max-seconds 120 --ready-file "$LOAD_DIR/ready" >"$LOAD_OUT" &
  LOADGEN_PID=$!
  track pids "$LOADGEN_PID"
  wait_for 10 "the first request through haproxy" test -e "$LOAD_DIR/ready"
}
# The load must cover the whole rollout: a generator that already stopped on its own
# bound (count or time) fails the test instead of hiding part of the window.
stop_load() {
  kill -TERM "$LOADGEN_PID" 2>/dev/null || true
  wait "$LOADGEN_PID" || true
  log "load: $(cat "$LOAD_OUT")"
  [ "$(load_field "['stopped_by']")" = signal ] ||
    fail "the load generator stopped by itself ($(load_field "['stopped_by']")) before the rollout ended"
}
load_field() { python3 -c "import json,sys; print(json.load(open('$LOAD_OUT'))$1)"; }

# restart_one I: docker stop (drains) → start → ready → haproxy has it UP again.
restart_one() {
  local i=$1 t0=$SECONDS
  docker stop -t 20 "${GW[$i]}" >/dev/null
  [ "$(container_state '{{.State.ExitCode}}' "${GW[$i]}")" = 0 ] || fail "gw$i exited non-zero"
  docker start "${GW[$i]}" >/dev/null
  wait_for 20 "gw$i ready" is_status 200 "http://${IPS[$i]}:15021/healthz/ready"
  wait_for 20 "haproxy sees gw$i UP" server_is "gw$i" UP
  log "gw$i restarted and back in haproxy in $((SECONDS - t0)) s"
}

# replace_one I DIR: docker stop (drains) → rm → run with the config in DIR → ready → UP.
replace_one() {
  local i=$1 dir=$2 t0=$SECONDS
  docker stop -t 20 "${GW[$i]}" >/dev/null
  [ "$(container_state '{{.State.ExitCode}}' "${GW[$i]}")" = 0 ] || fail "gw$i exited non-zero"
  docker rm "${GW[$i]}" >/dev/null
  GW[$i]=$(run_gw --network "$NET" --ip "${IPS[$i]}" --read-only --cap-drop ALL \
    -v "$dir:/etc/meshgate:ro" "$IMAGE")
  wait_for 20 "gw$i ready" is_status 200 "http://${IPS[$i]}:15021/healthz/ready"
  wait_for 20 "haproxy sees gw$i UP" server_is "gw$i" UP
  log "gw$i replaced (new config) and back in haproxy in $((SECONDS - t0)) s"
}

test_rolling_restart_behind_haproxy_loses_no_request() {
  local dir
  if ! ensure_haproxy; then
    echo "    SKIPPED: haproxy is not installed and cannot be installed here"
    return 0
  fi
  dir=$(config_copy)
  setup_lb "$dir"
  start_load
  for i in 1 2 3; do restart_one "$i"; done
  stop_load
  ROLL_RESULT="restart: $(load_field "['requests']") requests, $(load_field "['errors']") errors, longest stall $(load_field "['longest_stall_ms']") ms"
  [ "$(load_field "['errors']")" = 0 ] || fail "client errors: $(load_field "['reasons']")"

  # A config change rolled out on all three: each replaced, one by one, by one on the new config.
  local v2
  v2=$(config_copy)
  sed -i 's/hello from meshgate/hello from config v2/' "$v2/shop.yaml"
  start_load
  for i in 1 2 3; do replace_one "$i" "$v2"; done
  stop_load
  ROLL_RESULT="$ROLL_RESULT; config rollout: $(load_field "['requests']") requests, $(load_field "['errors']") errors, longest stall $(load_field "['longest_stall_ms']") ms"
  log "$ROLL_RESULT"
  [ "$(load_field "['errors']")" = 0 ] || fail "client errors: $(load_field "['reasons']")"
  [ "$(load_field "['bodies'].get('hello from config v2\n', 0) > 0")" = True ] || fail "no v2 answer seen"
  for _ in 1 2 3 4 5 6; do
    [ "$(body_of "http://127.0.0.1:$HAPROXY_PORT/hello")" = "hello from config v2" ] || fail "an old answer after the rollout"
  done
}

tests=(
  test_image_is_small_static_and_non_root
  test_docker_run_serves_the_example_config
  test_meshgate_health_fails_when_nothing_listens
  test_static_binary_resolves_upstream_names_through_dns
  test_editing_the_mounted_folder_hot_reloads_and_docker_stop_drains
  test_rolling_restart_behind_haproxy_loses_no_request
)
# ONLY="test_a test_b" docker/test.sh runs just those.
[ -n "${ONLY:-}" ] && read -r -a tests <<<"$ONLY"
for t in "${tests[@]}"; do
  run_test "$t"
done
summary
[ "$failed" = 0 ]
