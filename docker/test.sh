#!/usr/bin/env bash
# Container tests: the image (docker/build.sh) against the real Docker engine.
#
#   docker/test.sh            # tests meshgate:latest (MESHGATE_IMAGE to change); build it first
#
# Needs a Docker engine (skipped, saying so, without one) and curl. Everything it creates (containers, one network, temp dirs, haproxy) is
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

published() { docker port "$1" "$2/tcp" | grep -m1 '^127.0.0.1:'; }

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
  echo "$files" | grep -qx 'usr/local/bin/meshgate' || fail "no usr/local/bin/meshgate"
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
  body_of "http://$web/api/orders?id=7" | grep -q "backend answered" || fail "/api/orders (upstream pool)"
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
  docker logs "$id" 2>&1 | grep -q 'config reloaded' || fail "no 'config reloaded' log line"
  log "$(docker logs "$id" 2>&1 | grep -m1 'config reloaded' | cut -c1-200)"

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
  docker logs "$id" 2>&1 | grep -q 'draining' || fail "no draining log line"
}

for t in \
  test_image_is_small_static_and_non_root \
  test_docker_run_serves_the_example_config \
  test_meshgate_health_fails_when_nothing_listens \
  test_editing_the_mounted_folder_hot_reloads_and_docker_stop_drains; do
  run_test "$t"
done
summary
[ "$failed" = 0 ]
