#!/usr/bin/env python3
"""Connection bursts and HTTP/2 memory, meshgate vs Envoy 1.40 (a bench, not a test):

  connect-burst  2,000 clients connect at once (a cloud load balancer after a failover) and each
                 sends one HTTP/1.1 request: time from connect() to the response, p50/p99/max,
                 and how many took over 1 s (a SYN retransmit: the listen backlog overflowed).
  h2-active      h2load -c2000 -m1 (HTTP/2 prior knowledge, 2,000 connections each with a
                 request in flight all the time) for --h2-secs: peak RSS (VmHWM) and RSS, then
                 RSS --after seconds after the connections closed.
  h2c-throughput h2load -c64 -m10 (h2c prior knowledge, 64 connections with 10 streams each) for
                 --h2-secs, --h2-rounds times per proxy, alternating: req/s, mean latency and
                 proxy CPU per request (medians). `--only h2c-throughput` runs just this.

The proxies run at once, pinned to --proxy-cpu (meshgate one worker, Envoy --concurrency 1), the
nginx upstream (../shared/bench's config, 127.0.0.1:18080) and the clients on --load-cpu.

  cargo build --release
  benches/burst_memory.py --after 60
"""
import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import benchkit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
UPSTREAM_CONF = os.path.join(ROOT, "..", "shared", "bench", "upstream", "nginx.conf")
MESHGATE_PORT, ENVOY_PORT = 18000, 18001


async def one(port):
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.read()
        writer.close()
        ok = head.startswith(b"HTTP/1.1 200")
    except (OSError, asyncio.IncompleteReadError):
        ok = False
    return time.monotonic() - t0, ok


async def burst(port, n):
    return await asyncio.gather(*(one(port) for _ in range(n)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--h2-conns", type=int, default=2000)
    ap.add_argument("--h2-secs", type=int, default=15)
    ap.add_argument("--after", type=int, default=60)
    ap.add_argument("--h2-rounds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated scenarios (default: all)")
    benchkit.add_proxy_args(ap, ROOT)
    a = ap.parse_args()
    a.envoy = benchkit.envoy_binary(a.envoy)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {a.load_cpu})
    run = tempfile.mkdtemp(prefix="burst-memory.")
    os.chmod(run, 0o755)
    procs = []
    try:
        os.makedirs(f"{run}/upstream")
        with open(UPSTREAM_CONF) as f:
            conf = f.read().replace("__RUNDIR__", run)
        with open(f"{run}/upstream/nginx.conf", "w") as f:
            f.write(conf)

        def start(cpu, cmd):
            p = subprocess.Popen(["taskset", "-c", str(cpu)] + cmd, stdout=subprocess.DEVNULL,
                                 stderr=open(f"{run}/{len(procs)}.log", "w"))
            procs.append(p)
            return p

        # Envoy as upstream_churn.py configures it: codec AUTO (HTTP/1.1 and h2c), Istio's
        # default retry policy, circuit breakers out of the way.
        sys.path.insert(0, HERE)
        from upstream_churn import ENVOY_CONFIG
        with open(f"{run}/envoy.yaml", "w") as f:
            f.write(ENVOY_CONFIG % {"port": ENVOY_PORT, "admin": 19901, "up": 18080})
        start(a.load_cpu, ["nginx", "-p", f"{run}/upstream", "-c", f"{run}/upstream/nginx.conf", "-e",
                           "stderr", "-g", "daemon off;"])
        targets = {
            "meshgate": (start(a.proxy_cpu, [a.meshgate, "--config", os.path.join(ROOT, "benches", "compare"),
                                             "--bind", "127.0.0.1", "--no-watch", "--admin-address", "off",
                                             "--health-address", "off", "--stats-address", "off",
                                             "--access-log-format", "off"]), MESHGATE_PORT),
            "envoy": (start(a.proxy_cpu, [a.envoy, "-c", f"{run}/envoy.yaml", "--concurrency", "1",
                                          "--disable-hot-restart", "-l", "error"]), ENVOY_PORT),
        }
        for name, (p, port) in targets.items():
            if not benchkit.wait_port(port, time.time() + 20):
                sys.exit(f"{name} did not listen on {port} (logs in {run})")
        time.sleep(1)

        only = set(filter(None, a.only.split(",")))
        wanted = lambda scen: not only or scen in only  # noqa: E731
        print("| scenario | figure | meshgate | envoy |\n|---|---|---:|---:|")
        if wanted("h2c-throughput"):
            h2c_throughput(targets, a)
        res = {}
        for name, (p, port) in targets.items() if wanted("connect-burst") else []:
            times = asyncio.run(burst(port, a.clients))
            lat = sorted(t for t, _ in times)
            res[name] = (statistics.median(lat), lat[int(len(lat) * 0.99) - 1], lat[-1],
                         sum(1 for t in lat if t > 1.0), sum(1 for _, ok in times if not ok))
            time.sleep(2)
        for i, label in enumerate(["p50", "p99", "max"] if res else []):
            print(f"| connect-burst ({a.clients} clients) | {label} | {res['meshgate'][i] * 1000:.0f} ms | "
                  f"{res['envoy'][i] * 1000:.0f} ms |")
        if res:
            print(f"| connect-burst | clients over 1 s | {res['meshgate'][3]} | {res['envoy'][3]} |")
            print(f"| connect-burst | failed | {res['meshgate'][4]} | {res['envoy'][4]} |", flush=True)

        mem = {}
        for name, (p, port) in targets.items() if wanted("h2-active") else []:
            idle = benchkit.status_kib(p.pid, "VmRSS")
            h2 = subprocess.Popen(["h2load", "-t1", f"-c{a.h2_conns}", "-m1", "-D", str(a.h2_secs),
                                   f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, text=True)
            time.sleep(a.h2_secs * 0.8)
            during = benchkit.status_kib(p.pid, "VmRSS")
            out = h2.communicate(timeout=a.h2_secs + 60)[0]
            done = next((l.strip() for l in out.splitlines() if l.strip().startswith("requests:")), "?")
            peak = benchkit.status_kib(p.pid, "VmHWM")
            time.sleep(a.after)
            after = benchkit.status_kib(p.pid, "VmRSS")
            mem[name] = (idle, during, peak, after, done)
        for i, label in enumerate(["RSS before", f"RSS with {a.h2_conns} active h2 connections",
                                   "peak RSS (VmHWM, whole run)", f"RSS {a.after} s after they closed"]
                                  if mem else []):
            print(f"| h2-active | {label} | {mem['meshgate'][i] / 1024:.1f} MiB | {mem['envoy'][i] / 1024:.1f} MiB |")
        if mem:
            print(f"| h2-active | h2load | {mem['meshgate'][4]} | {mem['envoy'][4]} |")
    finally:
        benchkit.stop(procs)
        shutil.rmtree(run, ignore_errors=True)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def h2c_throughput(targets, a):
    """h2load -c64 -m10 over h2c, --h2-rounds per proxy, alternating; prints the medians."""
    import re
    rows = {name: [] for name in targets}
    for r in range(a.h2_rounds):
        order = list(targets.items()) if r % 2 == 0 else list(reversed(targets.items()))
        for name, (p, port) in order:
            t0 = cpu_ticks(p.pid)
            out = subprocess.run(["h2load", "-t1", "-c64", "-m10", "-D", str(a.h2_secs),
                                  f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                                 timeout=a.h2_secs + 60).stdout
            ticks = cpu_ticks(p.pid) - t0
            done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, "
                             r"(\d+) errored", out)
            took = re.search(r"finished in ([\d.]+)s", out)
            mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
            if not (done and took and mean):
                sys.exit(f"h2load gave no result:\n{out}")
            ok = float(done.group(1))
            m = mean.group(1)
            mean_ms = float(m[:-2]) if m.endswith("ms") else float(m[:-2]) / 1000 if m.endswith("us") \
                else float(m[:-1]) * 1000
            cpu_us = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / max(ok, 1)
            rows[name].append((ok / float(took.group(1)), mean_ms, cpu_us,
                               int(done.group(2)) + int(done.group(3))))
            print(f"round {r + 1} h2c {name:8} {rows[name][-1][0]:9.0f} req/s mean {mean_ms:.2f} ms "
                  f"cpu {cpu_us:.1f} us/req failed {rows[name][-1][3]}", file=sys.stderr, flush=True)
    med = {name: [statistics.median(v[i] for v in vals) for i in range(3)] for name, vals in rows.items()}
    for i, label in enumerate(["req/s", "mean latency ms", "proxy CPU us/req"]):
        print(f"| h2c-throughput (h2load -c64 -m10) | {label} | {med['meshgate'][i]:.1f} | "
              f"{med['envoy'][i]:.1f} |", flush=True)
    failed = {name: sum(v[3] for v in vals) for name, vals in rows.items()}
    print(f"| h2c-throughput | failed | {failed['meshgate']} | {failed['envoy']} |", flush=True)


if __name__ == "__main__":
    main()
