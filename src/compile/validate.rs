//! Per-resource checks for Gateway, DestinationRule and ServiceEntry (what Istio rejects).
//! VirtualService checks live with route compilation (`routes.rs`), which already walks every field.

use std::collections::HashMap;

use crate::config::{self, ConflictKind, ErrorKind, Resource};

use super::headers::invalid;
use super::names::{host_error, is_dns_label};
use super::{duration_field, Ctx};

/// Protocols a Gateway server port may declare (case-insensitive).
pub(super) const PROTOCOLS: &[&str] = &[
    "HTTP",
    "HTTPS",
    "HTTP2",
    "GRPC",
    "GRPC-WEB",
    "TCP",
    "TLS",
    "MONGO",
    "REDIS",
    "MYSQL",
    "HTTP_PROXY",
    "UDP",
];

pub(super) fn gateway(gw: &Resource<config::GatewaySpec>, cx: &mut Ctx<'_>) {
    if !is_dns_label(&gw.name) {
        cx.error(
            "metadata.name",
            invalid(
                "gateway name",
                &gw.name,
                "must be a DNS-1123 label (no dots)",
            ),
        );
    }
    if gw.spec.servers.is_empty() {
        cx.error(
            "spec.servers",
            ErrorKind::Note("a Gateway must have at least one server".into()),
        );
    }
    let mut port_names: HashMap<&str, usize> = HashMap::new();
    for (i, s) in gw.spec.servers.iter().enumerate() {
        let f = format!("spec.servers[{i}]");
        match &s.port {
            None => cx.error(&format!("{f}.port"), ErrorKind::Missing),
            Some(p) => {
                match p.number {
                    None => cx.error(&format!("{f}.port.number"), ErrorKind::Missing),
                    Some(n) if !(1..=65535).contains(&n) => cx.error(
                        &format!("{f}.port.number"),
                        ErrorKind::OutOfRange {
                            value: n,
                            min: 1,
                            max: 65535,
                        },
                    ),
                    Some(_) => {}
                }
                match &p.protocol {
                    None => cx.error(&format!("{f}.port.protocol"), ErrorKind::Missing),
                    Some(proto) if !PROTOCOLS.contains(&proto.to_ascii_uppercase().as_str()) => cx.error(
                        &format!("{f}.port.protocol"),
                        invalid("protocol", proto, "use HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, REDIS or MYSQL"),
                    ),
                    Some(_) => {}
                }
                match p.name.as_deref() {
                    None | Some("") => cx.error(&format!("{f}.port.name"), ErrorKind::Missing),
                    Some(n) => {
                        if let Some(first) = port_names.insert(n, i) {
                            cx.error(
                                &format!("{f}.port.name"),
                                ErrorKind::Duplicate {
                                    what: "port name",
                                    value: n.into(),
                                    first: Some(format!("spec.servers[{first}]")),
                                },
                            );
                        }
                    }
                }
                if p.target_port.is_some() {
                    cx.error(
                        &format!("{f}.port.targetPort"),
                        ErrorKind::Note("targetPort is not allowed on a Gateway".into()),
                    );
                }
            }
        }
        if s.hosts.is_empty() {
            cx.error(
                &format!("{f}.hosts"),
                ErrorKind::Note("a server must have at least one host".into()),
            );
        }
        for (j, h) in s.hosts.iter().enumerate() {
            if let Some(why) = server_host_error(h) {
                cx.error(&format!("{f}.hosts[{j}]"), invalid("host", h, why));
            }
        }
        if let Some(b) = &s.bind {
            let ok = b.parse::<std::net::IpAddr>().is_ok() || b.starts_with("unix://");
            if !ok {
                cx.error(
                    &format!("{f}.bind"),
                    invalid("bind", b, "must be an IP address or unix://path"),
                );
            }
        }
        let proto = s
            .port
            .as_ref()
            .and_then(|p| p.protocol.as_deref())
            .unwrap_or("")
            .to_ascii_uppercase();
        let tls_port = proto == "HTTPS" || proto == "TLS";
        match &s.tls {
            None if tls_port => cx.error(
                &format!("{f}.tls"),
                ErrorKind::Note(format!("a {proto} server needs a tls block")),
            ),
            Some(t) if !tls_port => {
                let redirect_only = t.server_certificate.is_none()
                    && t.credential_name.is_none()
                    && t.mode.as_deref().unwrap_or("PASSTHROUGH") == "PASSTHROUGH";
                if !redirect_only
                    || !matches!(proto.as_str(), "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB")
                {
                    cx.error(
                        &format!("{f}.tls"),
                        ErrorKind::Note(format!(
                            "tls settings are not allowed on a {proto} server (only httpsRedirect)"
                        )),
                    );
                }
            }
            Some(t) => server_tls(t, &format!("{f}.tls"), cx),
            None => {}
        }
    }
}

fn server_host_error(h: &str) -> Option<&'static str> {
    let (ns, host) = match h.split_once('/') {
        Some((ns, host)) => (Some(ns), host),
        None => (None, h),
    };
    if let Some(ns) = ns {
        if ns != "*" && ns != "." && !is_dns_label(ns) {
            return Some("the namespace part must be `*`, `.` or a namespace name");
        }
    }
    if host.is_empty() {
        return Some("empty host");
    }
    if host != "*" && !host.contains('.') && host.parse::<std::net::IpAddr>().is_err() {
        return Some("short names are not allowed in Gateway hosts; use a fully qualified name");
    }
    host_error(host)
}

fn server_tls(t: &config::ServerTlsSettings, f: &str, cx: &mut Ctx<'_>) {
    let mode = t
        .mode
        .as_deref()
        .unwrap_or("PASSTHROUGH")
        .to_ascii_uppercase();
    if !matches!(
        mode.as_str(),
        "PASSTHROUGH"
            | "SIMPLE"
            | "MUTUAL"
            | "AUTO_PASSTHROUGH"
            | "ISTIO_MUTUAL"
            | "OPTIONAL_MUTUAL"
    ) {
        cx.error(
            &format!("{f}.mode"),
            invalid("TLS mode", &mode, "unknown mode"),
        );
        return;
    }
    let sources = [
        t.server_certificate.is_some() || t.private_key.is_some(),
        t.credential_name.is_some(),
        !t.credential_names.is_empty(),
        !t.tls_certificates.is_empty(),
    ];
    if sources.iter().filter(|b| **b).count() > 1 {
        cx.error(f, ErrorKind::Note("only one of serverCertificate/privateKey, credentialName, credentialNames, tlsCertificates may be set".into()));
    }
    let has_credential = t.credential_name.is_some()
        || !t.credential_names.is_empty()
        || !t.tls_certificates.is_empty();
    if matches!(mode.as_str(), "SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL") && !has_credential {
        if t.server_certificate.is_none() {
            cx.error(&format!("{f}.serverCertificate"), ErrorKind::Missing);
        }
        if t.private_key.is_none() {
            cx.error(&format!("{f}.privateKey"), ErrorKind::Missing);
        }
        if mode != "SIMPLE" && t.ca_certificates.is_none() {
            cx.error(&format!("{f}.caCertificates"), ErrorKind::Missing);
        }
    }
    if mode == "ISTIO_MUTUAL" && (sources.iter().any(|b| *b) || t.ca_certificates.is_some()) {
        cx.error(
            f,
            ErrorKind::Note(
                "ISTIO_MUTUAL cannot have certificates, keys, CAs or credentials".into(),
            ),
        );
    }
}

pub(super) fn destination_rule(dr: &Resource<config::DestinationRuleSpec>, cx: &mut Ctx<'_>) {
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
    if modes
        .flat_map(|tp| {
            tp.tls
                .iter()
                .chain(tp.port_level_settings.iter().filter_map(|p| p.tls.as_ref()))
        })
        .any(|t| t.mode.as_deref() == Some("ISTIO_MUTUAL"))
    {
        cx.warn("spec.trafficPolicy.tls.mode", ErrorKind::NotYetSupported {
            what: "ISTIO_MUTUAL (mesh mTLS needs an Istio workload identity); upstream traffic is sent in plain text".into(),
            ignored: true,
        });
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
        policy_parts(
            p.load_balancer.as_ref(),
            p.connection_pool.as_ref(),
            p.outlier_detection.as_ref(),
            &pf,
            cx,
        );
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

pub(super) fn export_to(list: &[String], service_entry: bool, cx: &mut Ctx<'_>) {
    let mut seen = std::collections::HashSet::new();
    for (i, e) in list.iter().enumerate() {
        let f = format!("spec.exportTo[{i}]");
        if !seen.insert(e.as_str()) {
            cx.error(
                &f,
                ErrorKind::Duplicate {
                    what: "exportTo entry",
                    value: e.clone(),
                    first: None,
                },
            );
        }
        match e.as_str() {
            "*" | "~" if list.len() > 1 => {
                cx.error(&f, invalid("exportTo", e, "must be the only entry"))
            }
            "~" if !service_entry => {
                cx.error(&f, invalid("exportTo", e, "only ServiceEntries may use ~"))
            }
            "*" | "." | "~" => {}
            ns if !is_dns_label(ns) => cx.error(&f, invalid("exportTo", e, "not a namespace name")),
            _ => {}
        }
    }
}

pub(super) fn service_entry(se: &Resource<config::ServiceEntrySpec>, cx: &mut Ctx<'_>) {
    let spec = &se.spec;
    if spec.hosts.is_empty() {
        cx.error(
            "spec.hosts",
            ErrorKind::Note("a ServiceEntry must have at least one host".into()),
        );
    }
    for (i, h) in spec.hosts.iter().enumerate() {
        if h == "*" {
            cx.error(
                &format!("spec.hosts[{i}]"),
                invalid("host", h, "`*` is not allowed"),
            );
        } else if let Some(why) = host_error(h) {
            cx.error(&format!("spec.hosts[{i}]"), invalid("host", h, why));
        }
    }
    export_to(&spec.export_to, true, cx);
    let resolution = spec.resolution.as_deref().unwrap_or("NONE");
    if !matches!(
        resolution,
        "NONE" | "STATIC" | "DNS" | "DNS_ROUND_ROBIN" | "DYNAMIC_DNS"
    ) {
        cx.error(
            "spec.resolution",
            invalid(
                "resolution",
                resolution,
                "use NONE, STATIC, DNS or DNS_ROUND_ROBIN",
            ),
        );
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut numbers: HashMap<i64, usize> = HashMap::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        match p.number {
            None => cx.error(&format!("{f}.number"), ErrorKind::Missing),
            Some(n) if !(1..=65535).contains(&n) => cx.error(
                &format!("{f}.number"),
                ErrorKind::OutOfRange {
                    value: n,
                    min: 1,
                    max: 65535,
                },
            ),
            Some(n) => {
                if let Some(first) = numbers.insert(n, i) {
                    cx.error(
                        &format!("{f}.number"),
                        ErrorKind::Duplicate {
                            what: "port number",
                            value: n.to_string(),
                            first: Some(format!("spec.ports[{first}]")),
                        },
                    );
                }
            }
        }
        if let Some(n) = p.name.as_deref() {
            if let Some(first) = names.insert(n, i) {
                cx.error(
                    &format!("{f}.name"),
                    ErrorKind::Duplicate {
                        what: "port name",
                        value: n.into(),
                        first: Some(format!("spec.ports[{first}]")),
                    },
                );
            }
        }
        if let Some(proto) = &p.protocol {
            if !PROTOCOLS.contains(&proto.to_ascii_uppercase().as_str()) {
                cx.error(
                    &format!("{f}.protocol"),
                    invalid("protocol", proto, "unknown protocol"),
                );
            }
        }
        if let Some(t) = p.target_port {
            if !(1..=65535).contains(&t) {
                cx.error(
                    &format!("{f}.targetPort"),
                    ErrorKind::OutOfRange {
                        value: t,
                        min: 1,
                        max: 65535,
                    },
                );
            }
        }
    }
    if resolution == "NONE" && !spec.endpoints.is_empty() {
        cx.error(
            "spec.endpoints",
            ErrorKind::Note("endpoints cannot be used with resolution NONE".into()),
        );
    }
    if resolution == "DNS_ROUND_ROBIN" && spec.endpoints.len() > 1 {
        cx.error(
            "spec.endpoints",
            ErrorKind::Note("DNS_ROUND_ROBIN allows at most one endpoint".into()),
        );
    }
    if resolution == "DNS" && spec.endpoints.is_empty() {
        for (i, h) in spec.hosts.iter().enumerate() {
            if h.starts_with('*') {
                cx.error(&format!("spec.hosts[{i}]"), invalid("host", h, "a DNS ServiceEntry without endpoints resolves its hosts, so they cannot be wildcards"));
            }
        }
    }
    if spec.workload_selector.is_some() && !spec.endpoints.is_empty() {
        cx.error(
            "spec.workloadSelector",
            ErrorKind::Conflict(ConflictKind {
                a: "workloadSelector",
                b: "endpoints",
            }),
        );
    }
    for (i, ep) in spec.endpoints.iter().enumerate() {
        let f = format!("spec.endpoints[{i}]");
        match ep.address.as_deref() {
            None | Some("") => cx.error(&format!("{f}.address"), ErrorKind::Missing),
            Some(a) if a.starts_with("unix://") => cx.error(
                &format!("{f}.address"),
                ErrorKind::NotYetSupported {
                    what: "unix socket endpoints".into(),
                    ignored: false,
                },
            ),
            Some(a) => {
                let is_ip = a.parse::<std::net::IpAddr>().is_ok();
                if resolution == "STATIC" && !is_ip {
                    cx.error(
                        &format!("{f}.address"),
                        invalid("address", a, "STATIC resolution needs an IP address"),
                    );
                } else if !is_ip {
                    if let Some(why) = host_error(a) {
                        cx.error(&format!("{f}.address"), invalid("address", a, why));
                    }
                }
            }
        }
        for (name, port) in &ep.ports {
            if !names.contains_key(name.as_str()) {
                cx.error(
                    &format!("{f}.ports.{name}"),
                    invalid("port name", name, "not declared in spec.ports"),
                );
            }
            if !(1..=65535).contains(port) {
                cx.error(
                    &format!("{f}.ports.{name}"),
                    ErrorKind::OutOfRange {
                        value: *port,
                        min: 1,
                        max: 65535,
                    },
                );
            }
        }
        if let Some(w) = ep.weight {
            if w < 0 {
                cx.error(
                    &format!("{f}.weight"),
                    invalid("weight", &w.to_string(), "must not be negative"),
                );
            }
        }
    }
}
