//! The config the explainer tests route through: one Gateway port, an exact and a wildcard
//! virtual host, and a rule for each kind of outcome (method/header/query conditions, direct
//! response, redirect, weighted split, unknown subset, a DNS-resolved destination).

use std::net::SocketAddr;

/// `a.svc` (subsets v1/v2 at `a_v1`/`a_v2`, ROUND_ROBIN), `b.svc` at `b`, and `reviews` (no
/// ServiceEntry: resolved through DNS), behind Gateway `gw` on `gateway_port`.
pub fn shop_config(gateway_port: u16, a_v1: SocketAddr, a_v2: SocketAddr, b: SocketAddr) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  servers:
  - port: {{number: {gateway_port}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: a}}
spec:
  hosts: [a.svc]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: {a1ip}, ports: {{http: {a1port}}}, labels: {{version: v1}}}}
  - {{address: {a2ip}, ports: {{http: {a2port}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: b}}
spec:
  hosts: [b.svc]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: {bip}, ports: {{http: {bport}}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: a}}
spec:
  host: a.svc
  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop, namespace: web}}
spec:
  hosts: [shop.example.com]
  gateways: [default/gw]
  http:
  - name: api
    match: [{{uri: {{prefix: /api}}, method: {{exact: POST}}}}]
    route: [{{destination: {{host: a.svc}}}}]
  - name: canary
    match: [{{uri: {{prefix: /cart}}, headers: {{x-canary: {{exact: "yes"}}}}}}]
    route: [{{destination: {{host: a.svc, subset: v2}}}}]
    timeout: 3s
    retries: {{attempts: 4, retryOn: "5xx,connect-failure", perTryTimeout: 1s}}
  - name: search
    match: [{{uri: {{exact: /search}}, queryParams: {{q: {{exact: "1"}}}}}}]
    directResponse: {{status: 200, body: {{string: found}}}}
  - name: old
    match: [{{uri: {{prefix: /old}}}}]
    redirect: {{uri: /new}}
  - name: split
    match: [{{uri: {{prefix: /split}}}}]
    route:
    - {{destination: {{host: a.svc, subset: v1}}, weight: 80}}
    - {{destination: {{host: b.svc}}, weight: 20}}
  - name: nc
    match: [{{uri: {{prefix: /nc}}}}]
    route: [{{destination: {{host: a.svc, subset: nope}}}}]
  - name: reviews
    match: [{{uri: {{prefix: /reviews}}}}]
    route: [{{destination: {{host: reviews}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: wild, namespace: web}}
spec:
  hosts: ["*.wild.example.com"]
  gateways: [default/gw]
  http:
  - match: [{{uri: {{prefix: /w}}}}]
    directResponse: {{status: 204}}
---
"#,
        a1ip = a_v1.ip(),
        a1port = a_v1.port(),
        a2ip = a_v2.ip(),
        a2port = a_v2.port(),
        bip = b.ip(),
        bport = b.port(),
    )
}
