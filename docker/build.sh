#!/usr/bin/env bash
# Builds the static meshgate binary and the image meshgate:latest (docker/Dockerfile, FROM scratch).
#
#   docker/build.sh                 # the real image: release profile (fat LTO), stripped
#   MESHGATE_PROFILE=image-ci docker/build.sh   # what CI builds: same code, opt-level 1, no LTO (faster)
#   MESHGATE_IMAGE=meshgate:dev docker/build.sh # another tag
#   MESHGATE_PGO=target/pgo/meshgate.profdata docker/build.sh   # built with a PGO profile
#                                               # (benches/pgo.sh makes one)
#
# Static glibc (target-feature=+crt-static): no libc in the image. meshgate resolves names through
# hickory (/etc/resolv.conf, /etc/hosts), never through glibc's NSS, so a static glibc is safe.
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${MESHGATE_PROFILE:-release}"
image="${MESHGATE_IMAGE:-meshgate:latest}"
target=x86_64-unknown-linux-gnu

export CARGO_INCREMENTAL=0
pgo=""
if [ -n "${MESHGATE_PGO:-}" ]; then
  pgo="-Cprofile-use=$(realpath "$MESHGATE_PGO")"
fi
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static $pgo" \
  cargo build --locked --profile "$profile" --target "$target" --bin meshgate

bin="target/$target/$profile/meshgate"
# Refuse a dynamic binary: it would not start in a scratch image.
if file "$bin" 2>/dev/null | grep -q 'dynamically linked'; then
  echo "build.sh: $bin is dynamically linked" >&2
  exit 1
fi

ctx=target/image
rm -rf "$ctx"
mkdir -p "$ctx"
cp "$bin" "$ctx/meshgate"
strip "$ctx/meshgate"

old=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
docker build --quiet -f docker/Dockerfile -t "$image" "$ctx" >/dev/null
rm -rf "$ctx"
# The image this tag named before is now dangling: remove it (by id, only if nothing uses it).
new=$(docker image inspect -f '{{.Id}}' "$image")
if [ -n "$old" ] && [ "$old" != "$new" ] && [ -z "$(docker image inspect -f '{{.RepoTags}}' "$old" 2>/dev/null | tr -d '[]')" ]; then
  docker rmi "$old" >/dev/null 2>&1 || true
fi
size=$(docker image inspect -f '{{.Size}}' "$image")
echo "built $image ($profile profile): $(awk -v s="$size" 'BEGIN { printf "%.1f MB (%d bytes)", s/1e6, s }')"
