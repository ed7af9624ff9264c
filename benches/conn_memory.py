#!/usr/bin/env python3
"""Resident memory per downstream connection, and after the connections close (a bench, not a test).

Starts the benchmark upstream (nginx on 127.0.0.1:18080, the compare.sh config) and the proxy
command given after `--`, which must listen on --port and forward to the upstream. Then:
  1. RSS of the proxy idle (after 100 warm-up requests);
  2. opens N HTTP/1.1 keep-alive connections, sends one request on each and reads the response,
     and keeps them open and idle: RSS, and (RSS - idle) / N per connection, at once and again
     --settle seconds later (meshgate parks connections quiet for 2 s: their buffers are freed);
     With --marginal, opens N more and reports the growth per connection (the slope);
  3. closes them all, waits --after seconds: RSS again (does the memory come back?).
Repeats step 2-3 --rounds times (a pod that saw a spike should not keep it).

  benches/conn_memory.py --n 10000 --after 60 --port 18000 -- \
      target/release/meshgate --config benches/compare --bind 127.0.0.1 --no-watch \
      --admin-address off --health-address off --stats-address off --access-log-format off

Needs nginx; `ulimit -n` must exceed N + a margin (the proxy needs 2 descriptors per connection
only while a request is in flight; idle ones hold 1).
"""
import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import benchkit

HERE = os.path.dirname(os.path.abspath(__file__))
UPSTREAM_CONF = os.path.join(HERE, "..", "..", "shared", "bench", "upstream", "nginx.conf")


async def one_request(port, keep):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if length:
        await reader.readexactly(length)
    if keep is None:
        writer.close()
    else:
        keep.append(writer)


async def open_many(port, n, concurrency):
    keep = []
    sem = asyncio.Semaphore(concurrency)

    async def guarded():
        async with sem:
            await one_request(port, keep)

    await asyncio.gather(*(guarded() for _ in range(n)))
    return keep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--after", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--port", type=int, default=18000)
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=500,
                    help="connections being opened (and their request answered) at once")
    ap.add_argument("--marginal", action="store_true",
                    help="after the settle, open N more and report (RSS(2N) - RSS(N)) / N: the "
                         "cost of one more idle connection, without what does not grow with N "
                         "(the upstream pool the burst's concurrency filled, runtime, tables)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        sys.exit("give the proxy command after --")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rundir = tempfile.mkdtemp(prefix="conn-memory.")
    os.makedirs(os.path.join(rundir, "upstream"))
    with open(UPSTREAM_CONF) as f:
        conf = f.read().replace("__RUNDIR__", rundir)
    with open(os.path.join(rundir, "upstream", "nginx.conf"), "w") as f:
        f.write(conf)
    procs = []
    try:
        procs.append(subprocess.Popen(
            ["nginx", "-p", os.path.join(rundir, "upstream"), "-c",
             os.path.join(rundir, "upstream", "nginx.conf"), "-e", "stderr", "-g", "daemon off;"]))
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
        proxy = procs[-1]
        if not benchkit.wait_port(a.port, time.time() + 20):
            sys.exit(f"proxy not listening on {a.port}")
        loop = asyncio.new_event_loop()
        for _ in range(100):
            loop.run_until_complete(one_request(a.port, None))
        idle = benchkit.status_kib(proxy.pid)
        print(f"idle: {idle / 1024:.1f} MiB")
        for r in range(1, a.rounds + 1):
            t0 = time.time()
            keep = loop.run_until_complete(open_many(a.port, a.n, a.concurrency))
            held = benchkit.status_kib(proxy.pid)
            print(f"round {r}: {a.n} idle connections (opened in {time.time() - t0:.1f} s): "
                  f"{held / 1024:.1f} MiB, {(held - idle) / a.n:.1f} KiB per connection")
            if a.settle > 0:
                time.sleep(a.settle)
                held = benchkit.status_kib(proxy.pid)
                print(f"round {r}: the same {a.settle:.0f} s later: "
                      f"{held / 1024:.1f} MiB, {(held - idle) / a.n:.1f} KiB per connection")
            if a.marginal:
                keep += loop.run_until_complete(open_many(a.port, a.n, a.concurrency))
                time.sleep(a.settle)
                more = benchkit.status_kib(proxy.pid)
                print(f"round {r}: {2 * a.n} idle connections, {a.settle:.0f} s later: "
                      f"{more / 1024:.1f} MiB, {(more - held) / a.n:.1f} KiB per connection "
                      f"more (marginal)")
            for w in keep:
                w.close()
            # asyncio closes a transport's socket on the loop: run it, or nothing is closed.
            loop.run_until_complete(asyncio.sleep(1))
            deadline = time.time() + a.after
            while time.time() < deadline:
                time.sleep(0.5)
            after = benchkit.status_kib(proxy.pid)
            print(f"round {r}: {a.after:.0f} s after closing: {after / 1024:.1f} MiB "
                  f"({after / idle:.2f}x idle)")
    finally:
        benchkit.stop(procs)
        shutil.rmtree(rundir, ignore_errors=True)


if __name__ == "__main__":
    main()
