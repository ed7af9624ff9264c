//! The route explainer: for one request given by hand, which listener took it, which virtual host
//! (and why), every route tried in order with the first condition that failed, the chosen rule
//! and what it would do (destinations, endpoints, policy, redirect `location`, direct status).
//! Served live by the admin API (`GET /explain`) and offline by `meshgate explain`.
//!
//! It routes with the request path's own code: `proxy::normalize_path`, `HostTable`,
//! `RequestMatch::first_mismatch` (which `RequestMatch::matches` is defined by) and the redirect
//! `location` builder, so an explanation cannot disagree with what a request gets.
//! Owns: parsing the request to explain, the `Explanation` data and its text form.
//! May not touch: sockets, the `ArcSwap`, `config::*`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde::Serialize;

use crate::proxy::ProxyError;
use crate::route::{
    ClusterId, Forward, HostMatch, PathRewrite, RequestView, Route, RouteAction, RouteTable,
};
use crate::upstream::{Cluster, ClusterSpec, Discovery, HashKey, LbPolicy};

/// A request to explain: what `GET /explain?...` or `meshgate explain ...` was given.
#[derive(Debug, Clone)]
pub struct Target {
    pub method: Method,
    /// `Host`/`:authority` as the request would send it (port included), if known.
    pub authority: Option<String>,
    /// The origin-form path and query, as sent (not normalised).
    pub uri: Uri,
    pub headers: HeaderMap,
}

/// Where the clusters of the route tables come from.
#[derive(Debug, Clone, Copy)]
pub enum Upstreams<'a> {
    /// The live snapshot: endpoints and their health.
    Live(&'a [Arc<Cluster>]),
    /// A config compiled offline: endpoints of STATIC clusters only.
    Offline(&'a [ClusterSpec]),
}

/// Everything the explainer found, serialisable for `--json` / `format=json`.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub request: RequestInfo,
    /// The Gateway port that would take the request (`None`: no listener on that port).
    pub listener: Option<u16>,
    /// Every Gateway port served.
    pub listener_ports: Vec<u16>,
    pub virtual_host: Option<VirtualHostInfo>,
    /// The routes of the virtual host tried in order, up to the first that matched.
    pub routes: Vec<RouteTry>,
    /// The route chosen (its origin), if any.
    pub chosen: Option<RouteInfo>,
    pub outcome: Outcome,
}

#[derive(Debug, Serialize)]
pub struct RequestInfo {
    pub method: String,
    pub authority: Option<String>,
    /// As given.
    pub path: String,
    /// What routes match (`None` when the path is rejected).
    pub normalized_path: Option<String>,
    pub query: Option<String>,
    pub headers: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct VirtualHostInfo {
    pub name: String,
    /// `exact`, `wildcard` (longest `*.suffix`) or `*`.
    pub matched_by: &'static str,
    pub https_redirect: bool,
}

#[derive(Debug, Serialize)]
pub struct RouteInfo {
    pub name: String,
    /// `file.yaml#2`
    pub location: String,
    /// `VirtualService shop/cart`
    pub resource: String,
    /// `spec.http[1] (name)`
    pub rule: String,
    pub match_index: usize,
}

#[derive(Debug, Serialize)]
pub struct RouteTry {
    pub route: RouteInfo,
    pub matched: bool,
    /// The first condition that failed.
    pub reason: Option<String>,
}

/// What the request would get.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// No listener on the Gateway port: the connection would be refused.
    NoListener {
        port: u16,
    },
    /// Rejected before routing (400, 431).
    Rejected {
        status: u16,
        flag: String,
        reason: String,
    },
    /// 404 `NR`.
    NoRoute {
        status: u16,
        flag: String,
        reason: String,
    },
    /// `tls.httpsRedirect` on the server: 301.
    HttpsRedirect {
        status: u16,
        location: String,
    },
    Redirect {
        status: u16,
        location: String,
    },
    DirectResponse {
        status: u16,
        body_bytes: usize,
    },
    Forward(ForwardInfo),
}

#[derive(Debug, Serialize)]
pub struct ForwardInfo {
    pub destinations: Vec<Destination>,
    pub policy: Policy,
}

#[derive(Debug, Serialize)]
pub struct Destination {
    /// `outbound|<port>|<subset>|<host>`
    pub cluster: String,
    pub weight: u32,
    /// Share of requests, in percent of the route's total weight.
    pub percent: f64,
    /// `false`: no such cluster (unknown host, subset or port): 503 `NC`.
    pub exists: bool,
    /// `ROUND_ROBIN`, `LEAST_REQUEST`, `RANDOM`, `consistentHash(...)`.
    pub lb: Option<String>,
    pub outlier_detection: bool,
    pub endpoints: Vec<EndpointInfo>,
    /// Why `endpoints` is empty or partial (`not resolved offline`, `no such cluster: 503 NC`).
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct EndpointInfo {
    pub address: String,
    pub weight: u32,
    /// `healthy` or `ejected`; `None` offline.
    pub health: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct Policy {
    /// Route timeout in milliseconds; `None` = no timeout.
    pub timeout_ms: Option<u64>,
    pub retries: Retries,
    pub rewrite: Option<String>,
    /// `rewrite.authority` (or a `host` header set on the route).
    pub authority_rewrite: Option<String>,
    pub cors: bool,
    /// `delay 5s (10%)`, `abort 503 (100%)`.
    pub fault: Option<String>,
    pub mirrors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Retries {
    pub attempts: u32,
    pub retry_on: Vec<&'static str>,
    pub retriable_status_codes: Vec<u16>,
    pub per_try_timeout_ms: Option<u64>,
}

// === impl Target ===

impl Target {
    /// `url` is `http://host[:port]/path?query` or a bare `/path?query` (the authority then comes
    /// from `host`, or a `Host` header). `headers` are `name: value` strings.
    pub fn parse(
        method: &str,
        url: &str,
        host: Option<&str>,
        headers: &[String],
    ) -> Result<Target, String> {
        let method = Method::from_bytes(method.trim().as_bytes())
            .map_err(|_| format!("bad method {method:?}"))?;
        let mut map = HeaderMap::new();
        for h in headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| format!("bad header {h:?}: expected `name: value`"))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("bad header name in {h:?}"))?;
            let value = HeaderValue::from_str(value.trim())
                .map_err(|_| format!("bad header value in {h:?}"))?;
            map.append(name, value);
        }
        let uri: Uri = url
            .trim()
            .parse()
            .map_err(|e| format!("bad url {url:?}: {e}"))?;
        match uri.scheme_str() {
            None | Some("http") => {}
            Some(s) => {
                return Err(format!(
                    "bad url {url:?}: scheme {s}: meshgate serves plain http only"
                ))
            }
        }
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| host.map(str::to_owned))
            .or_else(|| {
                map.get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .filter(|a| !a.is_empty());
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let uri: Uri = pq.parse().map_err(|e| format!("bad url {url:?}: {e}"))?;
        Ok(Target {
            method,
            authority,
            uri,
            headers: map,
        })
    }

    /// The port in the authority, if any.
    pub fn port(&self) -> Option<u16> {
        let a = self.authority.as_deref()?;
        let (_, port) = a.rsplit_once(':')?;
        if a.starts_with('[') && !a[..a.len() - port.len()].ends_with("]:") {
            return None;
        }
        port.parse().ok()
    }
}

/// Explains `target` arriving on Gateway port `port` of `listeners`.
pub fn explain(
    target: &Target,
    port: u16,
    listeners: &[(u16, &RouteTable)],
    upstreams: Upstreams<'_>,
) -> Explanation {
    let mut ex = Explanation {
        request: RequestInfo {
            method: target.method.to_string(),
            authority: target.authority.clone(),
            path: target.uri.path().to_owned(),
            normalized_path: None,
            query: target.uri.query().map(str::to_owned),
            headers: target
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("<binary>")))
                .collect(),
        },
        listener: None,
        listener_ports: listeners.iter().map(|(p, _)| *p).collect(),
        virtual_host: None,
        routes: Vec::new(),
        chosen: None,
        outcome: Outcome::NoListener { port },
    };
    let Some(table) = listeners.iter().find(|(p, _)| *p == port).map(|(_, t)| *t) else {
        return ex;
    };
    ex.listener = Some(port);
    // The same checks, in the same order, as `proxy::service::route_request`.
    if crate::proxy::headers_too_large(&target.headers) {
        ex.outcome = rejected(ProxyError::HeadersTooLarge);
        return ex;
    }
    let Some(authority) = target.authority.as_deref() else {
        ex.outcome = rejected(ProxyError::MissingHost);
        return ex;
    };
    let Ok(path) = crate::proxy::normalize_path(target.uri.path()) else {
        let mut o = rejected(ProxyError::BadPath);
        if let Outcome::Rejected { reason, .. } = &mut o {
            reason.push_str(" (not normalisable, or %00 in it)");
        }
        ex.outcome = o;
        return ex;
    };
    ex.request.normalized_path = Some(path.to_string());
    let view = RequestView {
        method: &target.method,
        scheme: "http",
        authority,
        path: &path,
        query: target.uri.query(),
        headers: &target.headers,
    };
    let Some((vh, kind)) = table.hosts.find_with_kind(authority) else {
        ex.outcome = no_route(format!("no virtual host matches {authority:?}"));
        return ex;
    };
    let vhost = &table.vhosts[vh];
    ex.virtual_host = Some(VirtualHostInfo {
        name: vhost.name.to_string(),
        matched_by: match kind {
            HostMatch::Exact => "exact",
            HostMatch::Suffix => "wildcard",
            HostMatch::Any => "*",
        },
        https_redirect: vhost.require_tls,
    });
    if vhost.require_tls {
        ex.outcome = Outcome::HttpsRedirect {
            status: 301,
            location: crate::proxy::https_location(authority, &target.uri),
        };
        return ex;
    }
    let mut chosen = None;
    for route in &vhost.routes {
        let mismatch = route.matcher.first_mismatch(&view);
        let matched = mismatch.is_none();
        ex.routes.push(RouteTry {
            route: route_info(route),
            matched,
            reason: mismatch.map(|m| m.to_string()),
        });
        if matched {
            chosen = Some(route);
            break;
        }
    }
    let Some(route) = chosen else {
        ex.outcome = no_route(format!(
            "none of the {} route(s) of virtual host {} matches",
            vhost.routes.len(),
            vhost.name
        ));
        return ex;
    };
    ex.chosen = Some(route_info(route));
    ex.outcome = match &*route.action {
        RouteAction::Direct(d) => Outcome::DirectResponse {
            status: d.status.as_u16(),
            body_bytes: d.body.len(),
        },
        RouteAction::Redirect(r) => Outcome::Redirect {
            status: r.code.as_u16(),
            location: crate::proxy::redirect_location(r, route, authority, &path, view.query),
        },
        RouteAction::Forward(f) => Outcome::Forward(forward_info(f, upstreams)),
    };
    ex
}

fn rejected(e: ProxyError) -> Outcome {
    Outcome::Rejected {
        status: e.status().as_u16(),
        flag: e.response_flags().to_string(),
        reason: e.to_string(),
    }
}

fn no_route(reason: String) -> Outcome {
    Outcome::NoRoute {
        status: 404,
        flag: "NR".into(),
        reason,
    }
}

fn route_info(r: &Route) -> RouteInfo {
    RouteInfo {
        name: r.name.to_string(),
        location: r.origin.location.to_string(),
        resource: r.origin.resource.to_string(),
        rule: r.origin.rule.to_string(),
        match_index: r.match_index,
    }
}

fn forward_info(f: &Forward, upstreams: Upstreams<'_>) -> ForwardInfo {
    let destinations = f
        .clusters
        .iter()
        .map(|w| {
            let mut d = Destination {
                cluster: w.key.to_string(),
                weight: w.weight,
                percent: f64::from(w.weight) * 100.0 / f.total_weight.max(1) as f64,
                exists: false,
                lb: None,
                outlier_detection: false,
                endpoints: Vec::new(),
                note: Some("no such cluster (unknown host, subset or port): 503 NC".into()),
            };
            if let Some(id) = w.cluster {
                fill_cluster(&mut d, id, upstreams);
            }
            d
        })
        .collect();
    let retry = &f.retry;
    ForwardInfo {
        destinations,
        policy: Policy {
            timeout_ms: f.timeout.map(millis),
            retries: Retries {
                attempts: retry.num_retries,
                retry_on: retry.on.tokens(),
                retriable_status_codes: retry.status_codes.clone(),
                per_try_timeout_ms: retry.per_try_timeout.map(millis),
            },
            rewrite: f.rewrite.as_deref().map(|r| match r {
                PathRewrite::Matched(to) => format!("uri: matched part → {to:?}"),
                PathRewrite::Regex {
                    pattern,
                    replacement,
                } => format!("uriRegexRewrite: {:?} → {replacement:?}", pattern.as_str()),
            }),
            authority_rewrite: f
                .host_rewrite
                .as_ref()
                .map(|v| v.to_str().unwrap_or("<binary>").to_owned()),
            cors: f.cors.is_some(),
            fault: f.fault.as_ref().map(|fp| {
                let mut parts = Vec::new();
                if let Some(d) = fp.delay {
                    parts.push(format!(
                        "delay {:?} ({}%)",
                        d.duration,
                        f64::from(d.per_million) / 10_000.0
                    ));
                }
                if let Some(a) = fp.abort {
                    let what = match a.kind {
                        crate::route::AbortKind::Http(s) => format!("http {}", s.as_u16()),
                        crate::route::AbortKind::Grpc(c) => format!("grpc {c}"),
                    };
                    parts.push(format!(
                        "abort {what} ({}%)",
                        f64::from(a.per_million) / 10_000.0
                    ));
                }
                parts.join(", ")
            }),
            mirrors: f.mirrors.iter().map(|m| m.key.to_string()).collect(),
        },
    }
}

fn fill_cluster(d: &mut Destination, id: ClusterId, upstreams: Upstreams<'_>) {
    let (spec, live) = match upstreams {
        Upstreams::Live(cs) => match cs.get(id) {
            Some(c) => (&c.spec, Some(c)),
            None => return,
        },
        Upstreams::Offline(specs) => match specs.get(id) {
            Some(s) => (s, None),
            None => return,
        },
    };
    d.exists = true;
    d.note = None;
    d.lb = Some(lb_name(&spec.lb));
    d.outlier_detection = spec.outlier.is_some();
    if let Some(why) = &spec.unsupported {
        d.note = Some(format!("{why}: 503"));
    }
    match live {
        Some(c) => {
            d.endpoints = c
                .endpoint_health()
                .iter()
                .map(|e| EndpointInfo {
                    address: e.addr.to_string(),
                    weight: e.weight,
                    health: Some(if e.ejected { "ejected" } else { "healthy" }),
                })
                .collect();
            if !c.is_resolved() {
                d.note = Some("DNS name not resolved: 503 NC".into());
            } else if d.endpoints.is_empty() {
                d.note = Some("no endpoints: 503 UH".into());
            }
        }
        None => match &spec.discovery {
            Discovery::Static(eps) => {
                d.endpoints = eps
                    .iter()
                    .map(|e| EndpointInfo {
                        address: e.addr.to_string(),
                        weight: e.weight,
                        health: None,
                    })
                    .collect();
                if eps.is_empty() {
                    d.note = Some("no endpoints: 503 UH".into());
                }
            }
            Discovery::Dns { names, .. } => {
                let names: Vec<String> = names.iter().map(|(n, p, _)| format!("{n}:{p}")).collect();
                d.note = Some(format!(
                    "endpoints: not resolved offline (DNS {})",
                    names.join(", ")
                ));
            }
            Discovery::Empty => d.note = Some("no endpoints (resolution NONE): 503 UH".into()),
        },
    }
}

fn lb_name(lb: &LbPolicy) -> String {
    match lb {
        LbPolicy::RoundRobin => "ROUND_ROBIN".into(),
        LbPolicy::LeastRequest => "LEAST_REQUEST".into(),
        LbPolicy::Random => "RANDOM".into(),
        LbPolicy::ConsistentHash(h) => match &h.key {
            HashKey::Header(n) => format!("consistentHash(httpHeaderName {n})"),
            HashKey::Cookie { name, .. } => format!("consistentHash(httpCookie {name})"),
            HashKey::SourceIp => "consistentHash(useSourceIp)".into(),
            HashKey::QueryParameter(q) => format!("consistentHash(httpQueryParameterName {q})"),
        },
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

// === text ===

/// The human-readable form: one fact per line, `key: value`, routes indented.
pub fn render_text(ex: &Explanation) -> String {
    let mut out = String::new();
    let r = &ex.request;
    let _ = write!(
        out,
        "request: {} {}{}",
        r.method,
        r.authority
            .as_deref()
            .map(|a| format!("http://{a}"))
            .unwrap_or_default(),
        r.path
    );
    if let Some(q) = &r.query {
        let _ = write!(out, "?{q}");
    }
    out.push('\n');
    for h in &r.headers {
        let _ = writeln!(out, "  header {h}");
    }
    if let Some(p) = &r.normalized_path {
        if *p != r.path {
            let _ = writeln!(out, "normalized path: {p}");
        }
    }
    let ports = ex
        .listener_ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    match ex.listener {
        Some(p) => {
            let _ = writeln!(out, "listener: Gateway port {p}");
        }
        None => {
            if let Outcome::NoListener { port } = ex.outcome {
                let _ = writeln!(
                    out,
                    "listener: none for Gateway port {port} (ports served: {ports}; the URL's port is the Gateway port)"
                );
            }
        }
    }
    if let Some(vh) = &ex.virtual_host {
        let how = match vh.matched_by {
            "exact" => "exact host",
            "wildcard" => "wildcard suffix",
            _ => "catch-all *",
        };
        let _ = writeln!(out, "virtual host: {} ({how})", vh.name);
    }
    if !ex.routes.is_empty() {
        out.push_str("routes tried:\n");
    }
    for (i, t) in ex.routes.iter().enumerate() {
        let verdict = match &t.reason {
            None => "MATCH".to_owned(),
            Some(why) => format!("no: {why}"),
        };
        let _ = writeln!(
            out,
            "  {i}. {} {} match[{}]: {verdict}",
            t.route.resource, t.route.rule, t.route.match_index
        );
    }
    if let Some(c) = &ex.chosen {
        let _ = writeln!(
            out,
            "chosen: {} {} {} match[{}]",
            c.location, c.resource, c.rule, c.match_index
        );
    }
    match &ex.outcome {
        Outcome::NoListener { .. } => {
            out.push_str("result: connection refused (no listener)\n");
        }
        Outcome::Rejected {
            status,
            flag,
            reason,
        } => {
            let _ = writeln!(out, "result: {status} {flag}: {reason} (before routing)");
        }
        Outcome::NoRoute {
            status,
            flag,
            reason,
        } => {
            let _ = writeln!(out, "result: {status} {flag}: {reason}");
        }
        Outcome::HttpsRedirect { status, location } => {
            let _ = writeln!(
                out,
                "result: {status} https redirect (tls.httpsRedirect), location: {location}"
            );
        }
        Outcome::Redirect { status, location } => {
            let _ = writeln!(out, "result: redirect {status}, location: {location}");
        }
        Outcome::DirectResponse { status, body_bytes } => {
            let _ = writeln!(
                out,
                "result: direct response {status} ({body_bytes} byte body)"
            );
        }
        Outcome::Forward(f) => render_forward(&mut out, f),
    }
    out
}

fn render_forward(out: &mut String, f: &ForwardInfo) {
    out.push_str("result: forward\n");
    for d in &f.destinations {
        let _ = write!(
            out,
            "  destination {} weight {} ({:.1}%)",
            d.cluster, d.weight, d.percent
        );
        if let Some(lb) = &d.lb {
            let _ = write!(out, ", lb {lb}");
        }
        if d.outlier_detection {
            out.push_str(", outlier detection");
        }
        out.push('\n');
        for e in &d.endpoints {
            let _ = write!(out, "    endpoint {} weight {}", e.address, e.weight);
            if let Some(h) = e.health {
                let _ = write!(out, " {h}");
            }
            out.push('\n');
        }
        if let Some(n) = &d.note {
            let _ = writeln!(out, "    {n}");
        }
    }
    let p = &f.policy;
    let ms = |v: Option<u64>| {
        v.map(|m| format!("{:?}", Duration::from_millis(m)))
            .unwrap_or_else(|| "none".into())
    };
    let _ = writeln!(out, "  timeout: {}", ms(p.timeout_ms));
    let _ = write!(out, "  retries: {}", p.retries.attempts);
    if p.retries.attempts > 0 {
        let _ = write!(out, " on {}", p.retries.retry_on.join(","));
        if !p.retries.retriable_status_codes.is_empty() {
            let codes: Vec<String> = p
                .retries
                .retriable_status_codes
                .iter()
                .map(u16::to_string)
                .collect();
            let _ = write!(out, " (status {})", codes.join(","));
        }
        let _ = write!(
            out,
            ", per try timeout {}",
            ms(p.retries.per_try_timeout_ms)
        );
    }
    out.push('\n');
    if let Some(r) = &p.rewrite {
        let _ = writeln!(out, "  rewrite: {r}");
    }
    if let Some(a) = &p.authority_rewrite {
        let _ = writeln!(out, "  authority rewrite: {a}");
    }
    let _ = writeln!(out, "  cors: {}", if p.cors { "yes" } else { "no" });
    let _ = writeln!(out, "  fault: {}", p.fault.as_deref().unwrap_or("none"));
    let mirrors = if p.mirrors.is_empty() {
        "none".to_owned()
    } else {
        p.mirrors.join(", ")
    };
    let _ = writeln!(out, "  mirrors: {mirrors}");
}
