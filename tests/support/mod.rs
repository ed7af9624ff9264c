//! Shared helpers for the end-to-end tests: real upstream servers, a real gateway, real clients,
//! all on 127.0.0.1 with ephemeral ports. No tests in here.
#![allow(dead_code)]

pub mod binary;
pub mod client;
pub mod explain;
pub mod fields;
pub mod gateway;
pub mod l4;
pub mod load;
pub mod tls;
pub mod upstream;

#[allow(unused_imports)]
pub use client::{Client, Reply};
#[allow(unused_imports)]
pub use gateway::TestGateway;
#[allow(unused_imports)]
pub use upstream::{closed_addr, Mode, Upstream};

/// Held by the tests that push the loopback network stack hard (a flood of 1,500 connections, a
/// burst of 1,000, a gateway out of file descriptors with 200 connections in its backlog), so
/// that no two of them run at once: together they made each other's connects fail. Poisoning
/// is ignored (a failed test must not fail the others).
/// Held in async tests across awaits on purpose: it only orders whole tests, each on its own
/// runtime, so nothing that awaits can need it.
pub fn exclusive() -> Exclusive {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    Exclusive(HEAVY.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The guard `exclusive` returns.
pub struct Exclusive(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

/// YAML for a STATIC ServiceEntry `host` on port 80 whose endpoints are the given upstreams,
/// each with its labels (`version: v1`, ...).
pub fn static_service(host: &str, endpoints: &[(&Upstream, &[(&str, &str)])]) -> String {
    let mut eps = String::new();
    for (u, labels) in endpoints {
        eps.push_str(&format!(
            "  - address: 127.0.0.1\n    ports: {{http: {}}}\n",
            u.addr.port()
        ));
        if !labels.is_empty() {
            eps.push_str("    labels:\n");
            for (k, v) in labels.iter() {
                eps.push_str(&format!("      {k}: {v}\n"));
            }
        }
    }
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se-{name}\nspec:\n  hosts: [{host}]\n  ports:\n  - {{number: 80, name: http, protocol: HTTP}}\n  resolution: STATIC\n  endpoints:\n{eps}---\n",
        name = host.replace('.', "-"),
    )
}

/// A Gateway `gw` in namespace `default` with one HTTP server on port 8080 and the given hosts.
pub fn gateway_yaml(hosts: &[&str]) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n  servers:\n  - port: {{number: 8080, name: http, protocol: HTTP}}\n    hosts: [{}]\n---\n",
        hosts.iter().map(|h| format!("\"{h}\"")).collect::<Vec<_>>().join(", ")
    )
}

/// Upstreams `a`..`e` behind STATIC hosts `a.svc`..`e.svc`, the Gateway `gw` for every host, and
/// `extra` YAML; the gateway started on it.
pub async fn five_upstreams(extra: &str) -> (TestGateway, Vec<Upstream>) {
    let mut ups = Vec::new();
    let mut yaml = gateway_yaml(&["*"]);
    for name in ["a", "b", "c", "d", "e"] {
        let u = Upstream::start(name).await;
        yaml.push_str(&static_service(&format!("{name}.svc"), &[(&u, &[])]));
        ups.push(u);
    }
    yaml.push_str(extra);
    (TestGateway::start(&yaml).await, ups)
}

/// YAML for a STATIC ServiceEntry `host` on port 80 (protocol `HTTP` or `HTTP2`) whose endpoints
/// are the given addresses (live upstreams or closed ports).
pub fn service_at(host: &str, protocol: &str, addrs: &[std::net::SocketAddr]) -> String {
    let eps: String = addrs
        .iter()
        .map(|a| {
            format!(
                "  - address: {}\n    ports: {{http: {}}}\n",
                a.ip(),
                a.port()
            )
        })
        .collect();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se-{name}\nspec:\n  hosts: [{host}]\n  ports:\n  - {{number: 80, name: http, protocol: {protocol}}}\n  resolution: STATIC\n  endpoints:\n{eps}---\n",
        name = host.replace('.', "-"),
    )
}

/// YAML for a DestinationRule on `host` with the given `trafficPolicy` (flow-style YAML).
pub fn destination_rule(host: &str, traffic_policy: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: dr-{name}\nspec:\n  host: {host}\n  trafficPolicy: {traffic_policy}\n---\n",
        name = host.replace('.', "-"),
    )
}

/// YAML for a VirtualService `vs` for every host, bound to Gateway `gw`, with the given
/// `http:` entries (block-style YAML, indented by two spaces).
pub fn virtual_service(http: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n{http}---\n")
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes; returns whether it held.
pub async fn eventually(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
