#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), starting from its committed seeds
# (fuzz/seeds/<target>) plus a scratch corpus (fuzz/corpus/<target>, not committed).
# Installs cargo-fuzz if missing; needs a nightly toolchain. Crashes land in
# fuzz/artifacts/<target>/: copy each into fuzz/regressions/<target>/ (replayed by
# `cargo test --test fuzz_replay`) and fix it. Exits non-zero if any target found a crash.
#
#   fuzz/run.sh 120            # every target, 120 s each
#   fuzz/run.sh 30 path        # one target
set -euo pipefail

seconds="${1:-60}"
shift || true
cd "$(dirname "$0")"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "== $t: ${seconds}s"
    if ! cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashes in: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
echo "no crashes in: ${targets[*]}"
