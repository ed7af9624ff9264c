//! Shared helpers for the end-to-end tests: real upstream servers, a real gateway, real clients,
//! all on 127.0.0.1 with ephemeral ports. No tests in here.
#![allow(dead_code)]

pub mod binary;
pub mod client;
pub mod gateway;
pub mod load;
pub mod upstream;

#[allow(unused_imports)]
pub use client::{Client, Reply};
#[allow(unused_imports)]
pub use gateway::TestGateway;
#[allow(unused_imports)]
pub use upstream::Upstream;

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
