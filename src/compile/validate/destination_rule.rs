//! DestinationRule: host, subsets and traffic policy (load balancer, pool, outlier detection).

use std::collections::HashMap;

use crate::config::{self, ConflictKind, ErrorKind, Resource};

use super::export_to;
use crate::compile::headers::invalid;
use crate::compile::names::{host_error, is_dns_label};
use crate::compile::{duration_field, Ctx};

pub(in crate::compile) fn destination_rule(
    dr: &Resource<config::DestinationRuleSpec>,
    opts: &crate::compile::Options,
    cx: &mut Ctx<'_>,
) {
    match dr.spec.host.as_deref() {
        None | Some("") => cx.error("spec.host", ErrorKind::Missing),
        Some(h) => {
            if let Some(why) = host_error(h) {
                cx.error("spec.host", invalid("host", h, why));
            }
        }
    }
    export_to(&dr.spec.export_to, false, cx);
    let modes = dr.spec.traffic_policy.iter().chain(
        dr.spec
            .subsets
            .iter()
            .filter_map(|s| s.traffic_policy.as_ref()),
    );
    if opts.mesh_certs_dir.is_none()
        && modes
            .flat_map(|tp| {
                tp.tls
                    .iter()
                    .chain(tp.port_level_settings.iter().filter_map(|p| p.tls.as_ref()))
            })
            .any(|t| t.mode.as_deref() == Some("ISTIO_MUTUAL"))
    {
        cx.warn(
            "spec.trafficPolicy.tls.mode",
            ErrorKind::Note(
                "ISTIO_MUTUAL without --mesh-certs-dir (the gateway's mesh workload certificate: cert-chain.pem, key.pem, root-cert.pem); upstream traffic is sent in plain text".into(),
            ),
        );
    }
    if let Some(tp) = &dr.spec.traffic_policy {
        traffic_policy(tp, "spec.trafficPolicy", cx);
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, s) in dr.spec.subsets.iter().enumerate() {
        let f = format!("spec.subsets[{i}]");
        match s.name.as_deref() {
            None | Some("") => cx.error(&format!("{f}.name"), ErrorKind::Missing),
            Some(n) => {
                if !is_dns_label(n) {
                    cx.error(
                        &format!("{f}.name"),
                        invalid("subset name", n, "not a DNS-1123 label"),
                    );
                }
                if let Some(first) = names.insert(n, i) {
                    cx.error(
                        &format!("{f}.name"),
                        ErrorKind::Duplicate {
                            what: "subset",
                            value: n.into(),
                            first: Some(format!("spec.subsets[{first}]")),
                        },
                    );
                }
            }
        }
        if let Some(tp) = &s.traffic_policy {
            traffic_policy(tp, &format!("{f}.trafficPolicy"), cx);
        }
    }
}

fn traffic_policy(tp: &config::TrafficPolicy, f: &str, cx: &mut Ctx<'_>) {
    if let Some(t) = &tp.tls {
        client_tls(t, &format!("{f}.tls"), cx);
    }
    policy_parts(
        tp.load_balancer.as_ref(),
        tp.connection_pool.as_ref(),
        tp.outlier_detection.as_ref(),
        f,
        cx,
    );
    for (i, p) in tp.port_level_settings.iter().enumerate() {
        let pf = format!("{f}.portLevelSettings[{i}]");
        if p.port.as_ref().and_then(|p| p.number).is_none() {
            cx.error(&format!("{pf}.port"), ErrorKind::Missing);
        }
        if let Some(t) = &p.tls {
            client_tls(t, &format!("{pf}.tls"), cx);
        }
        policy_parts(
            p.load_balancer.as_ref(),
            p.connection_pool.as_ref(),
            p.outlier_detection.as_ref(),
            &pf,
            cx,
        );
    }
}

/// `ClientTLSSettings` as istiod validates them: a credential excludes the file fields, and
/// MUTUAL without a credential needs both client files.
fn client_tls(t: &config::ClientTlsSettings, f: &str, cx: &mut Ctx<'_>) {
    let mode = t.mode.as_deref().unwrap_or("DISABLE");
    if !matches!(mode, "DISABLE" | "SIMPLE" | "MUTUAL" | "ISTIO_MUTUAL") {
        cx.error(
            &format!("{f}.mode"),
            invalid(
                "tls mode",
                mode,
                "expected DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL",
            ),
        );
        return;
    }
    if !matches!(mode, "SIMPLE" | "MUTUAL") {
        if mode == "ISTIO_MUTUAL" && t.ca_crl.as_deref().is_some_and(|v| !v.is_empty()) {
            cx.warn(
                &format!("{f}.caCrl"),
                ErrorKind::NotYetSupported {
                    what: "caCrl with ISTIO_MUTUAL".into(),
                    ignored: true,
                },
            );
        }
        return;
    }
    let files = [
        ("clientCertificate", &t.client_certificate),
        ("privateKey", &t.private_key),
        ("caCertificates", &t.ca_certificates),
        ("caCrl", &t.ca_crl),
    ];
    if t.credential_name.as_deref().is_some_and(|c| !c.is_empty()) {
        for (name, v) in files {
            if v.as_deref().is_some_and(|v| !v.is_empty()) {
                cx.error(
                    &format!("{f}.{name}"),
                    ErrorKind::Conflict(ConflictKind {
                        a: "credentialName",
                        b: name,
                    }),
                );
            }
        }
    } else if mode == "MUTUAL" {
        for (name, v) in &files[..2] {
            if v.as_deref().is_none_or(str::is_empty) {
                cx.error(&format!("{f}.{name}"), ErrorKind::Missing);
            }
        }
    }
}

fn policy_parts(
    lb: Option<&config::LoadBalancerSettings>,
    pool: Option<&config::ConnectionPoolSettings>,
    od: Option<&config::OutlierDetection>,
    f: &str,
    cx: &mut Ctx<'_>,
) {
    if let Some(lb) = lb {
        if let Some(s) = &lb.simple {
            match s.as_str() {
                "UNSPECIFIED" | "LEAST_REQUEST" | "LEAST_CONN" | "ROUND_ROBIN" | "RANDOM" => {}
                "PASSTHROUGH" => cx.error(
                    &format!("{f}.loadBalancer.simple"),
                    ErrorKind::Unsupported {
                        what: "PASSTHROUGH load balancing".into(),
                        why: "a gateway has no original destination to pass through to",
                    },
                ),
                other => cx.error(
                    &format!("{f}.loadBalancer.simple"),
                    invalid(
                        "load balancer",
                        other,
                        "use ROUND_ROBIN, LEAST_REQUEST or RANDOM",
                    ),
                ),
            }
        }
        if lb.simple.is_some() && lb.consistent_hash.is_some() {
            cx.error(
                &format!("{f}.loadBalancer"),
                ErrorKind::Conflict(ConflictKind {
                    a: "simple",
                    b: "consistentHash",
                }),
            );
        }
        if let Some(ch) = &lb.consistent_hash {
            if let Some(m) = ch.maglev.as_ref().and_then(|m| m.table_size) {
                if m == 0 || m >= 5_000_011 || !is_prime(m as u64) {
                    cx.error(
                        &format!("{f}.loadBalancer.consistentHash.maglev.tableSize"),
                        invalid(
                            "table size",
                            &m.to_string(),
                            "must be a prime below 5000011",
                        ),
                    );
                }
            }
            if let Some(c) = &ch.http_cookie {
                if c.name.as_deref().unwrap_or("").is_empty() {
                    cx.error(
                        &format!("{f}.loadBalancer.consistentHash.httpCookie.name"),
                        ErrorKind::Missing,
                    );
                }
                if let Some(t) = &c.ttl {
                    let _ = crate::config::duration::parse(t).map_err(|why| {
                        cx.error(
                            &format!("{f}.loadBalancer.consistentHash.httpCookie.ttl"),
                            ErrorKind::BadDuration {
                                value: t.clone(),
                                why,
                            },
                        )
                    });
                }
            }
        }
    }
    if let Some(pool) = pool {
        if pool.tcp.is_none() && pool.http.is_none() {
            cx.error(
                &format!("{f}.connectionPool"),
                ErrorKind::Note("one of tcp or http is required".into()),
            );
        }
        if let Some(tcp) = &pool.tcp {
            negative(
                tcp.max_connections,
                &format!("{f}.connectionPool.tcp.maxConnections"),
                cx,
            );
            if let Some(t) = &tcp.connect_timeout {
                duration_field(t, &format!("{f}.connectionPool.tcp.connectTimeout"), cx);
            }
        }
        if let Some(http) = &pool.http {
            let hf = format!("{f}.connectionPool.http");
            negative(
                http.http1_max_pending_requests,
                &format!("{hf}.http1MaxPendingRequests"),
                cx,
            );
            negative(
                http.http2_max_requests,
                &format!("{hf}.http2MaxRequests"),
                cx,
            );
            negative(
                http.max_requests_per_connection,
                &format!("{hf}.maxRequestsPerConnection"),
                cx,
            );
            negative(http.max_retries, &format!("{hf}.maxRetries"), cx);
            if let Some(p) = &http.h2_upgrade_policy {
                if !matches!(p.as_str(), "DEFAULT" | "DO_NOT_UPGRADE" | "UPGRADE") {
                    cx.error(
                        &format!("{hf}.h2UpgradePolicy"),
                        invalid(
                            "h2UpgradePolicy",
                            p,
                            "use DEFAULT, DO_NOT_UPGRADE or UPGRADE",
                        ),
                    );
                }
            }
            if let Some(t) = &http.idle_timeout {
                duration_field(t, &format!("{hf}.idleTimeout"), cx);
            }
        }
    }
    if let Some(od) = od {
        let of = format!("{f}.outlierDetection");
        for (v, name) in [
            (od.max_ejection_percent, "maxEjectionPercent"),
            (od.min_health_percent, "minHealthPercent"),
        ] {
            if let Some(v) = v {
                if !(0..=100).contains(&v) {
                    cx.error(
                        &format!("{of}.{name}"),
                        ErrorKind::OutOfRange {
                            value: v,
                            min: 0,
                            max: 100,
                        },
                    );
                }
            }
        }
        for (v, name) in [
            (&od.interval, "interval"),
            (&od.base_ejection_time, "baseEjectionTime"),
        ] {
            if let Some(t) = v {
                duration_field(t, &format!("{of}.{name}"), cx);
            }
        }
        if od.consecutive_errors.is_some() {
            cx.warn(
                &format!("{of}.consecutiveErrors"),
                ErrorKind::Note("deprecated and ignored by Istio; use consecutive5xxErrors".into()),
            );
        }
    }
}

fn negative(v: Option<i64>, field: &str, cx: &mut Ctx<'_>) {
    if let Some(v) = v {
        if v < 0 {
            cx.error(
                field,
                invalid("value", &v.to_string(), "must not be negative"),
            );
        }
    }
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}
