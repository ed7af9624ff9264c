//! Fields meshgate reads but does not apply yet: each one set gets a warning naming its field path,
//! `…: <what>: not supported by meshgate yet; ignored`, so no field is ever dropped silently.
//! `tests/e2e/config_fields.rs` holds the table of every model field (applied or warned here).
//!
//! Fields that make meshgate refuse something (delegation, unix endpoints, HTTPS servers, TLS
//! origination) are reported where they are validated, not here.

use std::collections::BTreeMap;

use crate::compile::{Ctx, Options};
use crate::config::{self, ErrorKind, Resource};

/// Gateway: a `selector` that does not select meshgate's own labels (Istio would not serve it).
pub(in crate::compile) fn gateway(
    gw: &Resource<config::GatewaySpec>,
    opts: &Options,
    cx: &mut Ctx<'_>,
) {
    let selects_us = gw
        .spec
        .selector
        .iter()
        .all(|(k, v)| opts.proxy_labels.get(k) == Some(v));
    if !selects_us {
        let labels = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        ignored(
            cx,
            "spec.selector",
            format!(
                "selecting gateways by label ({} does not select meshgate's {}; the Gateway is served anyway)",
                labels(&gw.spec.selector),
                labels(&opts.proxy_labels)
            ),
        );
    }
}

/// VirtualService `http[]` fields with no effect yet.
pub(in crate::compile) fn virtual_service(
    vs: &Resource<config::VirtualServiceSpec>,
    cx: &mut Ctx<'_>,
) {
    for (i, r) in vs.spec.http.iter().enumerate() {
        for (j, m) in r.matches.iter().enumerate() {
            if m.stat_prefix.is_some() {
                ignored(
                    cx,
                    &format!("spec.http[{i}].match[{j}].statPrefix"),
                    "per-route stats".into(),
                );
            }
        }
        if r.retries
            .as_ref()
            .is_some_and(|r| r.retry_remote_localities.is_some())
        {
            ignored(
                cx,
                &format!("spec.http[{i}].retries.retryRemoteLocalities"),
                "locality-aware retries".into(),
            );
        }
    }
}

/// DestinationRule: the traffic policy at every level, and `workloadSelector`.
pub(in crate::compile) fn destination_rule(
    dr: &Resource<config::DestinationRuleSpec>,
    cx: &mut Ctx<'_>,
) {
    if dr.spec.workload_selector.is_some() {
        ignored(
            cx,
            "spec.workloadSelector",
            "selecting workloads (the rule applies to meshgate whatever the selector)".into(),
        );
    }
    if let Some(tp) = &dr.spec.traffic_policy {
        traffic_policy(tp, "spec.trafficPolicy", cx);
    }
    for (i, s) in dr.spec.subsets.iter().enumerate() {
        if let Some(tp) = &s.traffic_policy {
            traffic_policy(tp, &format!("spec.subsets[{i}].trafficPolicy"), cx);
        }
    }
}

fn traffic_policy(tp: &config::TrafficPolicy, f: &str, cx: &mut Ctx<'_>) {
    for (set, field, what) in [
        (tp.tunnel.is_some(), "tunnel", "tunnelling (HTTP CONNECT)"),
        (
            tp.proxy_protocol.is_some(),
            "proxyProtocol",
            "PROXY protocol to upstreams",
        ),
        (tp.retry_budget.is_some(), "retryBudget", "retry budgets"),
    ] {
        if set {
            ignored(cx, &format!("{f}.{field}"), what.into());
        }
    }
    parts(
        tp.load_balancer.as_ref(),
        tp.connection_pool.as_ref(),
        f,
        cx,
    );
    for (i, p) in tp.port_level_settings.iter().enumerate() {
        parts(
            p.load_balancer.as_ref(),
            p.connection_pool.as_ref(),
            &format!("{f}.portLevelSettings[{i}]"),
            cx,
        );
    }
}

fn parts(
    lb: Option<&config::LoadBalancerSettings>,
    pool: Option<&config::ConnectionPoolSettings>,
    f: &str,
    cx: &mut Ctx<'_>,
) {
    if let Some(lb) = lb {
        let lf = format!("{f}.loadBalancer");
        for (set, field, what) in [
            (
                lb.locality_lb_setting.is_some(),
                "localityLbSetting",
                "locality load balancing",
            ),
            (lb.warmup.is_some(), "warmup", "slow-start warmup"),
            (
                lb.warmup_duration_secs.is_some(),
                "warmupDurationSecs",
                "slow-start warmup",
            ),
        ] {
            if set {
                ignored(cx, &format!("{lf}.{field}"), what.into());
            }
        }
        let cookie = lb
            .consistent_hash
            .as_ref()
            .and_then(|c| c.http_cookie.as_ref());
        if cookie.is_some_and(|c| !c.attributes.is_empty()) {
            ignored(
                cx,
                &format!("{lf}.consistentHash.httpCookie.attributes"),
                "cookie attributes".into(),
            );
        }
    }
    let Some(pool) = pool else { return };
    let pf = format!("{f}.connectionPool");
    if pool
        .tcp
        .as_ref()
        .is_some_and(|t| t.max_connection_duration.is_some())
    {
        ignored(
            cx,
            &format!("{pf}.tcp.maxConnectionDuration"),
            "a maximum upstream connection lifetime".into(),
        );
    }
    if let Some(h) = &pool.http {
        for (set, field, what) in [
            (
                h.use_client_protocol.is_some(),
                "useClientProtocol",
                "choosing the upstream protocol from the client's",
            ),
            (
                h.max_concurrent_streams.is_some(),
                "maxConcurrentStreams",
                "a per-connection HTTP/2 stream limit",
            ),
            (
                h.http2_keep_alive.is_some(),
                "http2KeepAlive",
                "HTTP/2 PING keepalive",
            ),
        ] {
            if set {
                ignored(cx, &format!("{pf}.http.{field}"), what.into());
            }
        }
    }
}

/// ServiceEntry: workload selection, locality, networks and identities.
pub(in crate::compile) fn service_entry(se: &Resource<config::ServiceEntrySpec>, cx: &mut Ctx<'_>) {
    if se.spec.workload_selector.is_some() {
        ignored(
            cx,
            "spec.workloadSelector",
            "endpoints from pods or WorkloadEntries (only `endpoints` are used)".into(),
        );
    }
    if !se.spec.subject_alt_names.is_empty() {
        ignored(
            cx,
            "spec.subjectAltNames",
            "upstream identity verification".into(),
        );
    }
    for (i, ep) in se.spec.endpoints.iter().enumerate() {
        for (set, field, what) in [
            (ep.locality.is_some(), "locality", "locality load balancing"),
            (ep.network.is_some(), "network", "multi-network endpoints"),
            (
                ep.service_account.is_some(),
                "serviceAccount",
                "workload identities",
            ),
        ] {
            if set {
                ignored(cx, &format!("spec.endpoints[{i}].{field}"), what.into());
            }
        }
    }
}

fn ignored(cx: &mut Ctx<'_>, field: &str, what: String) {
    cx.warn(
        field,
        ErrorKind::NotYetSupported {
            what,
            ignored: true,
        },
    );
}
