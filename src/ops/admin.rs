//! The admin API (loopback by default): what the gateway serves and how its upstreams are doing,
//! and the operator's switches (fail health checks, reload). JSON for tools, text where Envoy's
//! admin answers text.

use std::sync::{Arc, Weak};

use serde_json::{json, Value};

use crate::explain::{render_text, ChainView, PortView, Target, Upstreams};
use crate::gateway::Gateway;
use crate::route::{L4Route, L4Table, RouteAction, RouteTable};
use crate::snapshot::Snapshot;
use crate::tls::TlsPort;

use super::server::{Endpoint, Reply, Request};

/// The admin endpoint for `gateway` (held weakly: the gateway owns this server).
pub fn admin(gateway: Weak<Gateway>) -> Endpoint {
    Arc::new(move |req: Request| {
        let gateway = gateway.clone();
        Box::pin(async move {
            let Some(gw) = gateway.upgrade() else {
                return Reply::text(503, "shutting down\n");
            };
            route(&gw, &req).await
        })
    })
}

async fn route(gw: &Gateway, req: &Request) -> Reply {
    let get = req.method == http::Method::GET;
    let post = req.method == http::Method::POST;
    match req.path.as_str() {
        "/ready" if get => {
            let state = gw.health().state();
            let status = if gw.health().is_ready() { 200 } else { 503 };
            Reply::text(status, format!("{state}\n"))
        }
        "/healthcheck/fail" if post => {
            gw.health().set_failed(true);
            Reply::text(200, "OK\n")
        }
        "/healthcheck/ok" if post => {
            gw.health().set_failed(false);
            Reply::text(200, "OK\n")
        }
        "/reload" if post => match gw.reload().await {
            Ok(None) => Reply::json(200, &json!({"result": "unchanged", "status": status(gw)})),
            Ok(Some(diff)) => Reply::json(
                200,
                &json!({"result": "applied", "diff": diff.to_string(), "status": status(gw)}),
            ),
            Err(e) => Reply::json(
                400,
                &json!({"result": "refused", "error": e.to_string(), "status": status(gw)}),
            ),
        },
        "/stats/prometheus" if get => super::stats_endpoint(req, Some(&gw.snapshot())),
        "/config_dump" if get => Reply::json(200, &config_dump(gw)),
        "/clusters" if get => Reply::text(200, clusters_text(&gw.snapshot())),
        "/explain" if get => explain(gw, req),
        "/ready" | "/healthcheck/fail" | "/healthcheck/ok" | "/reload" | "/stats/prometheus"
        | "/config_dump" | "/clusters" | "/explain" => Reply::text(405, "method not allowed\n"),
        "/" => Reply::text(200, INDEX),
        _ => Reply::text(404, "not found; GET / lists the endpoints\n"),
    }
}

const INDEX: &str = "meshgate admin\n\
  GET  /config_dump         the live config: listeners, routes, clusters, skipped resources\n\
  GET  /clusters            endpoints and their health, one per line\n\
  GET  /explain?url=…       how a request would be routed: method=, url= (http://host[:port]/path or\n\
                            a path with host=), header=name:value (repeatable), format=json\n\
  GET  /stats/prometheus    every metric\n\
  GET  /ready               LIVE, DRAINING, FAILED or PRE_INITIALIZING\n\
  POST /healthcheck/fail    make readiness fail (take this replica out of its load balancer)\n\
  POST /healthcheck/ok      undo /healthcheck/fail\n\
  POST /reload              re-read the config now\n";

/// `GET /explain?method=GET&url=http://host/path&header=x:y&format=json`: how the live config
/// would route that request. The URL's port picks the Gateway port; without one, the only
/// listener (if there is just one), else port 80.
fn explain(gw: &Gateway, req: &Request) -> Reply {
    let Some(url) = req.params("url").pop() else {
        return Reply::text(
            400,
            "url= is required, e.g. /explain?url=http://example.com/path\n",
        );
    };
    let method = req.params("method").pop().unwrap_or_else(|| "GET".into());
    let host = req.params("host").pop();
    let target = match Target::parse(&method, &url, host.as_deref(), &req.params("header")) {
        Ok(t) => t,
        Err(e) => return Reply::text(400, format!("{e}\n")),
    };
    let snap = gw.snapshot();
    let chains: Vec<Vec<ChainView>> = snap
        .listeners
        .iter()
        .map(|(p, _)| {
            snap.tls_port(*p)
                .map(|t| t.chains.iter().map(ChainView::live).collect())
                .unwrap_or_default()
        })
        .collect();
    let listeners: Vec<PortView> = snap
        .listeners
        .iter()
        .zip(&chains)
        .map(|((port, table), chains)| PortView {
            port: *port,
            table,
            chains,
        })
        .collect();
    let port = match (target.gateway_port(), listeners.as_slice()) {
        (Some(p), _) => p,
        (None, [only]) => only.port,
        (None, _) => 80,
    };
    let ex = crate::explain::explain(&target, port, &listeners, Upstreams::Live(&snap.clusters));
    if req.params("format").iter().any(|f| f == "json") {
        Reply::json(200, &serde_json::to_value(&ex).unwrap_or(Value::Null))
    } else {
        Reply::text(200, render_text(&ex))
    }
}

fn status(gw: &Gateway) -> Value {
    let st = gw.status().borrow().clone();
    let applied = st
        .applied_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    json!({
        "generation": st.generation,
        "fingerprint": format!("{:016x}", st.fingerprint),
        "applied_at_unix": applied,
        "reloads": {"success": st.successes, "partial": st.partial, "failure": st.failures, "unchanged": st.unchanged},
        "last_errors": st.last_errors,
        "skipped": st.skipped.iter().map(|s| json!({
            "kind": s.id.kind.to_string(),
            "namespace": s.id.namespace,
            "name": s.id.name,
            "kept_previous": s.kept_previous,
            "errors": s.errors,
        })).collect::<Vec<_>>(),
    })
}

fn config_dump(gw: &Gateway) -> Value {
    let snap = gw.snapshot();
    let addrs = gw.addrs();
    let listeners: Vec<Value> = snap
        .listeners
        .iter()
        .map(|(port, table)| {
            json!({
                "gateway_port": port,
                "address": addrs.get(port).map(|a| a.to_string()),
                "virtual_hosts": virtual_hosts(table, &snap),
                "l4": snap.l4_port(*port).map(|t| l4_json(t, &snap)),
                "filter_chains": snap.tls_port(*port).map(|t| chains_json(t, &snap)),
            })
        })
        .collect();
    json!({
        "status": status(gw),
        "health": gw.health().state(),
        "listeners": listeners,
        "clusters": snap.clusters.iter().map(|c| cluster_json(c)).collect::<Vec<_>>(),
    })
}

fn virtual_hosts(table: &RouteTable, snap: &Snapshot) -> Vec<Value> {
    table
        .vhosts
        .iter()
        .map(|vh| {
            json!({
                "name": &*vh.name,
                "https_redirect": vh.require_tls,
                "routes": vh.routes.iter().map(|r| json!({
                    "name": &*r.name,
                    "source": {
                        "location": &*r.origin.location,
                        "resource": &*r.origin.resource,
                        "rule": &*r.origin.rule,
                        "match_index": r.match_index,
                    },
                    "match": format!("{:?}", r.matcher),
                    "action": action_json(&r.action, snap),
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// The filter chains of an HTTPS or TLS-terminating port: names, SNI names, and the `tcp`
/// route of a TLS-terminated TCP chain (an HTTPS chain's routes are its virtual hosts).
fn chains_json(port: &TlsPort, snap: &Snapshot) -> Value {
    port.chains
        .iter()
        .map(|c| {
            json!({
                "name": &*c.name,
                "server_names": &c.server_names,
                "virtual_hosts": virtual_hosts(&c.table, snap),
                "l4": c.tcp.as_deref().map(|t| l4_json(t, snap)),
            })
        })
        .collect()
}

/// A TLS-passthrough port's SNI routes or a TCP port's route.
fn l4_json(table: &L4Table, snap: &Snapshot) -> Value {
    let route = |r: &L4Route| {
        json!({
            "name": &*r.name,
            "idle_timeout_ms": r.idle_timeout.map(|t| t.as_millis() as u64),
            "destinations": r.clusters.iter().map(|c| json!({
                "cluster": &*c.key,
                "weight": c.weight,
                "resolved": c.cluster.and_then(|id| snap.clusters.get(id)).is_some(),
            })).collect::<Vec<_>>(),
        })
    };
    match table {
        L4Table::Tcp(r) => json!({"tcp_route": r.as_deref().map(route)}),
        L4Table::Passthrough(t) => json!({"sni_routes": t
            .names
            .iter()
            .map(|(n, r)| (n.as_str(), r))
            .chain(t.any.iter().map(|r| ("*", r)))
            .map(|(n, r)| json!({"sni": n, "route": route(r)}))
            .collect::<Vec<_>>()}),
    }
}

fn action_json(action: &RouteAction, snap: &Snapshot) -> Value {
    match action {
        RouteAction::Direct(d) => json!({"direct_response": {"status": d.status.as_u16()}}),
        RouteAction::Redirect(r) => json!({"redirect": {"code": r.code.as_u16()}}),
        RouteAction::Forward(f) => json!({"route": {
            "destinations": f.clusters.iter().map(|w| json!({
                "cluster": &*w.key,
                "weight": w.weight,
                "resolved": w.cluster.and_then(|id| snap.clusters.get(id)).is_some(),
            })).collect::<Vec<_>>(),
            "timeout_ms": f.timeout.map(|t| t.as_millis() as u64),
            "retries": format!("{:?}", f.retry),
        }}),
    }
}

fn cluster_json(c: &crate::upstream::Cluster) -> Value {
    let stats = c.pool_stats();
    json!({
        "name": c.spec.key,
        "host": c.spec.host,
        "port": c.spec.port,
        "subset": c.spec.subset,
        "circuit_breakers": {
            "requests_active": stats.requests,
            "pending": stats.pending,
            "retries_active": stats.retries,
            "retries_total": stats.retries_total,
            "overflows_total": stats.overflows_total,
        },
        "endpoints": c.endpoint_health().iter().map(|e| json!({
            "address": e.addr.to_string(),
            "weight": e.weight,
            "active_requests": e.active,
            "health": if e.ejected { "ejected" } else { "healthy" },
            "ejections_total": e.ejections,
        })).collect::<Vec<_>>(),
    })
}

/// Envoy's `/clusters` text: `cluster::address::field::value`, one per line.
fn clusters_text(snap: &Snapshot) -> String {
    let mut out = String::new();
    for c in &snap.clusters {
        let key = &c.spec.key;
        for e in c.endpoint_health() {
            let flags = if e.ejected {
                "/failed_outlier_check"
            } else {
                "healthy"
            };
            out.push_str(&format!(
                "{key}::{addr}::health_flags::{flags}\n{key}::{addr}::weight::{w}\n{key}::{addr}::rq_active::{a}\n{key}::{addr}::ejections_total::{n}\n",
                addr = e.addr,
                w = e.weight,
                a = e.active,
                n = e.ejections
            ));
        }
    }
    out
}
