#!/usr/bin/env python3
"""Writes a large generated Istio config to a directory (a bench input, stdlib only).

  benches/gen_routes.py DIR [--hosts 1000] [--minimal]

DIR gets:
  gateway.yaml            one Gateway `bench/gw`, port 8080, hosts ["*"];
  vs-NNN.yaml             the VirtualServices, 100 per file: host `svc-<i>.example.com`, 10 http
                          routes each (3 regex uri matches, 3 with header matches, 4 weighted
                          routes to two subsets or two hosts, retries and timeouts on most);
  destination-rules.yaml  subsets v1/v2 (and a connection pool) for every even host;
  service-entries.yaml    a STATIC ServiceEntry per host (`svc-<i>.bench.internal`, endpoints
                          labelled v1 and v2 on 127.0.0.1), so no DNS is needed at start.

With --minimal: the Gateway and one VirtualService with one route (the idle baseline).
Regex patterns contain the host index, so they differ between VirtualServices as in real
configs. The output is deterministic.
"""
import argparse
import os

ROUTES_PER_HOST = 10
VS_PER_FILE = 100

GATEWAY = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: bench}
spec:
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
"""


def dest(i, subsets):
    """The two weighted destinations of host i: its subsets v1/v2, or itself and its neighbour."""
    host = f"svc-{i}.bench.internal"
    if subsets:
        return [(host, "v1"), (host, "v2")]
    return [(host, None), (f"svc-{i + 1}.bench.internal", None)]


def destination(host, subset, weight=None):
    d = f"{{host: {host}" + (f", subset: {subset}" if subset else "") + "}"
    return f"{{destination: {d}" + (f", weight: {weight}" if weight is not None else "") + "}"


def virtual_service(i, hosts):
    subsets = i % 2 == 0
    a, b = dest(i, subsets)
    single = f"[{destination('svc-%d.bench.internal' % i, None)}]"
    split = lambda wa: f"[{destination(*a, wa)}, {destination(*b, 100 - wa)}]"
    retries = "retries: {attempts: 3, perTryTimeout: 2s, retryOn: \"5xx,connect-failure,reset\"}"
    routes = [
        ("users-exact", "[{uri: {exact: /v1/users}}]", single, "timeout: 5s"),
        ("orders-prefix", "[{uri: {prefix: /v1/orders/}}]", split(90), retries),
        ("items-regex", f'[{{uri: {{regex: "/svc-{i}/v1/items/[0-9]+"}}}}]', single,
         "timeout: 3s"),
        ("carts-canary",
         '[{uri: {prefix: /v1/carts/}, headers: {x-canary: {exact: "true"}}}]', split(50),
         retries),
        ("users-v2-regex", f'[{{uri: {{regex: "/svc-{i}/v2/users/[a-z0-9-]+"}}}}]', split(80),
         "timeout: 10s\n    " + retries),
        ("orders-v2-header",
         '[{uri: {prefix: /v2/orders/}, headers: {x-user: {regex: "user-[0-9]+"}}}]', single,
         retries),
        ("details-regex", f'[{{uri: {{regex: "/svc-{i}/v3/[a-z]+/details"}}}}]', single,
         "timeout: 2s"),
        ("v3-tenant", '[{uri: {prefix: /v3/}, headers: {x-tenant: {prefix: "t-"}}}]', split(70),
         "timeout: 8s"),
        ("health", "[{uri: {exact: /healthz}}]", single, ""),
        ("last", "[{uri: {prefix: /}}]", split(95), "timeout: 15s\n    " + retries),
    ]
    assert len(routes) == ROUTES_PER_HOST
    out = [
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{name: vs-{i}, namespace: bench}}\n"
        f"spec:\n  hosts: [\"svc-{i}.example.com\"]\n  gateways: [gw]\n  http:\n"
    ]
    for name, match, route, extra in routes:
        out.append(f"  - name: {name}\n    match: {match}\n    route: {route}\n")
        if extra:
            out.append(f"    {extra}\n")
    return "".join(out)


def destination_rule(i):
    return (
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        f"metadata: {{name: svc-{i}, namespace: bench}}\n"
        f"spec:\n  host: svc-{i}.bench.internal\n"
        "  trafficPolicy:\n    connectionPool: {http: {http1MaxPendingRequests: 1024}}\n"
        "  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n"
    )


def service_entry(i):
    return (
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        f"metadata: {{name: svc-{i}, namespace: bench}}\n"
        f"spec:\n  hosts: [svc-{i}.bench.internal]\n"
        "  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n"
        "  endpoints:\n"
        "  - {address: 127.0.0.1, ports: {http: 18080}, labels: {version: v1}}\n"
        "  - {address: 127.0.0.2, ports: {http: 18080}, labels: {version: v2}}\n"
    )


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def generate(out_dir, hosts, minimal=False):
    """Writes the config; returns the number of http routes."""
    os.makedirs(out_dir, exist_ok=True)
    write(os.path.join(out_dir, "gateway.yaml"), GATEWAY)
    if minimal:
        write(os.path.join(out_dir, "vs-000.yaml"),
              "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
              "metadata: {name: vs, namespace: bench}\n"
              "spec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"
              "  - directResponse: {status: 200, body: {string: ok}}\n")
        return 1
    for start in range(0, hosts, VS_PER_FILE):
        end = min(start + VS_PER_FILE, hosts)
        write(os.path.join(out_dir, f"vs-{start // VS_PER_FILE:03d}.yaml"),
              "".join(virtual_service(i, hosts) for i in range(start, end)))
    write(os.path.join(out_dir, "destination-rules.yaml"),
          "".join(destination_rule(i) for i in range(0, hosts, 2)))
    write(os.path.join(out_dir, "service-entries.yaml"),
          # One more than the hosts: the last odd host splits to its neighbour.
          "".join(service_entry(i) for i in range(hosts + 1)))
    return hosts * ROUTES_PER_HOST


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--minimal", action="store_true")
    a = ap.parse_args()
    n = generate(a.dir, a.hosts, a.minimal)
    print(f"{a.dir}: {n} routes")


if __name__ == "__main__":
    main()
