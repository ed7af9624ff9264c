#!/usr/bin/env python3
"""Resident memory and validate time with 10,000 routes (a bench, not a test; stdlib only).

Generates (benches/gen_routes.py) a minimal config and the 1,000 hosts × 10 routes config into a
temporary directory, then:
  1. `meshgate validate DIR` wall time: the median of --runs runs (one process each: parse,
     validate, compile, print);
  2. starts `meshgate --config MINIMAL ...` and `meshgate --config 10K ...` in turn (no watcher,
     no admin/health/stats servers, no access log), waits until the listener accepts, and reads
     VmRSS and VmHWM (peak) from /proc 2 s later and --settle (22) s later: the runtime threads
     hand freed memory back when they park, every 2 s (`src/main.rs`);
  3. prints RSS idle, RSS with the 10k routes, and (RSS 10k - RSS idle) / routes, at both times.

  benches/route_memory.py [--meshgate target/release/meshgate] [--hosts 1000] [--runs 5]

Takes about a minute. Build first: `cargo build --release`.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import benchkit
import gen_routes

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def validate_time(meshgate, config, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run([meshgate, "validate", config], capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            sys.exit(f"meshgate validate {config} failed:\n{r.stdout}{r.stderr}")
    return statistics.median(times), r.stdout.strip().splitlines()[-1]


def serve_rss(meshgate, config, port, settle):
    """[(VmRSS, VmHWM) in KiB 2 s and `settle` s after meshgate serving `config` listens],
    and how long it took to listen."""
    cmd = [meshgate, "--config", config, "--listen", f"8080=127.0.0.1:{port}", "--no-watch",
           "--admin-address", "off", "--health-address", "off", "--stats-address", "off",
           "--access-log-format", "off"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        t0 = time.time()
        if not benchkit.wait_port(port, t0 + 60):
            sys.exit(f"meshgate not listening on {port}: {' '.join(cmd)}")
        listening = time.time()
        readings = []
        for at in (2.0, settle):
            time.sleep(max(0.0, listening + at - time.time()))
            readings.append((benchkit.status_kib(p.pid), benchkit.status_kib(p.pid, "VmHWM")))
        return readings, listening - t0
    finally:
        # No graceful drain (seconds): nothing is in flight and only the numbers above matter.
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshgate", default=os.path.join(ROOT, "target", "release", "meshgate"))
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--settle", type=float, default=22.0)
    ap.add_argument("--port", type=int, default=18471)
    ap.add_argument("--keep", help="write the configs here and keep them (default: a temp dir)")
    a = ap.parse_args()
    work = a.keep or tempfile.mkdtemp(prefix="route-memory.")
    try:
        minimal, big = os.path.join(work, "minimal"), os.path.join(work, "routes")
        gen_routes.generate(minimal, 1, minimal=True)
        routes = gen_routes.generate(big, a.hosts)
        median, summary = validate_time(a.meshgate, big, a.runs)
        print(f"validate: median {median * 1e3:.0f} ms of {a.runs} runs ({summary})")
        idle, _ = serve_rss(a.meshgate, minimal, a.port, a.settle)
        loaded, started = serve_rss(a.meshgate, big, a.port, a.settle)
        print(f"{routes} routes: listening {started:.2f} s after exec")
        for at, (idle_rss, _), (rss, peak) in zip((2.0, a.settle), idle, loaded):
            print(f"{at:4.0f} s after listening: RSS idle (1 route) {idle_rss / 1024:.1f} MiB, "
                  f"with {routes} routes {rss / 1024:.1f} MiB (peak {peak / 1024:.1f} MiB), "
                  f"{(rss - idle_rss) * 1024 / routes:.0f} bytes per route")
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
