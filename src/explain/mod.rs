//! The route explainer: for one request given by hand, which listener took it, which virtual host
//! (and why), every route tried in order with the first condition that failed, the chosen rule
//! and what it would do (destinations, endpoints, policy, redirect `location`, direct status).
//! Served live by the admin API (`GET /explain`) and offline by `meshgate explain`.
//!
//! It routes with the request path's own code: `proxy::normalize_path`, `HostTable`,
//! `RequestMatch::first_mismatch` (which `RequestMatch::matches` is defined by) and the redirect
//! `location` builder, so an explanation cannot disagree with what a request gets.
//! Owns: parsing the request to explain, running it through the tables (here), the
//! `Explanation` data (`report.rs`) and its text form (`text.rs`).
//! May not touch: sockets, the `ArcSwap`, `config::*`.

mod report;
mod text;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::proxy::ProxyError;
use crate::route::{
    ClusterId, Forward, HostMatch, PathRewrite, RequestView, Route, RouteAction, RouteTable,
};
use crate::upstream::{Cluster, ClusterSpec, Discovery, HashKey, LbPolicy};

pub use report::*;
pub use text::render_text;

/// A request to explain: what `GET /explain?...` or `meshgate explain ...` was given.
#[derive(Debug, Clone)]
pub struct Target {
    pub method: Method,
    /// `Host`/`:authority` as the request would send it (port included), if known.
    pub authority: Option<String>,
    /// The origin-form path and query, as sent (not normalised).
    pub uri: Uri,
    pub headers: HeaderMap,
    /// An `https://` URL: over TLS, with the host as SNI (and 443 the default port).
    pub https: bool,
}

/// One Gateway port as the explainer sees it: its route table, or an HTTPS port's filter chains
/// (live from the snapshot's `TlsPort`, offline from the compiled `FilterChain`s).
#[derive(Debug, Clone, Copy)]
pub struct PortView<'a> {
    pub port: u16,
    pub table: &'a RouteTable,
    pub chains: &'a [ChainView<'a>],
}

/// One filter chain of an HTTPS port.
#[derive(Debug, Clone, Copy)]
pub struct ChainView<'a> {
    pub name: &'a str,
    pub server_names: &'a [String],
    pub table: &'a RouteTable,
    /// A TLS-terminated TCP server (tunnelled, not HTTP).
    pub tcp: bool,
}

impl<'a> ChainView<'a> {
    /// A chain as compiled (`meshgate explain`).
    pub fn compiled(c: &'a crate::compile::FilterChain) -> Self {
        ChainView {
            name: &c.name,
            server_names: &c.server_names,
            table: &c.table,
            tcp: c.tcp.is_some(),
        }
    }

    /// A chain as served (the admin API's `/explain`).
    pub fn live(c: &'a crate::tls::Chain) -> Self {
        ChainView {
            name: &c.name,
            server_names: &c.server_names,
            table: &c.table,
            tcp: c.tcp.is_some(),
        }
    }
}

/// Where the clusters of the route tables come from.
#[derive(Debug, Clone, Copy)]
pub enum Upstreams<'a> {
    /// The live snapshot: endpoints and their health.
    Live(&'a [Arc<Cluster>]),
    /// A config compiled offline: endpoints of STATIC clusters only.
    Offline(&'a [ClusterSpec]),
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
        let https = match uri.scheme_str() {
            None | Some("http") => false,
            Some("https") => true,
            Some(s) => return Err(format!("bad url {url:?}: scheme {s}: use http or https")),
        };
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
            https,
        })
    }

    /// The Gateway port the request is for: the authority's, else 443 for https.
    pub fn gateway_port(&self) -> Option<u16> {
        self.port().or(self.https.then_some(443))
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
    listeners: &[PortView<'_>],
    upstreams: Upstreams<'_>,
) -> Explanation {
    let mut ex = Explanation {
        request: RequestInfo {
            method: target.method.to_string(),
            https: target.https,
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
        listener_ports: listeners.iter().map(|l| l.port).collect(),
        filter_chain: None,
        virtual_host: None,
        routes: Vec::new(),
        chosen: None,
        outcome: Outcome::NoListener { port },
    };
    let Some(listener) = listeners.iter().find(|l| l.port == port) else {
        return ex;
    };
    ex.listener = Some(port);
    let table = match pick_chain(target, listener) {
        Ok(None) => listener.table,
        Ok(Some(chain)) => {
            ex.filter_chain = Some(chain.name.to_owned());
            if chain.tcp {
                ex.outcome = Outcome::TcpTunnel {
                    filter_chain: chain.name.to_owned(),
                };
                return ex;
            }
            chain.table
        }
        Err(reason) => {
            ex.outcome = Outcome::NoFilterChain { reason };
            return ex;
        }
    };
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
        scheme: if target.https { "https" } else { "http" },
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
    if vhost.require_tls && !target.https {
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
            location: crate::proxy::redirect_location(
                r,
                route,
                view.scheme,
                authority,
                &path,
                view.query,
            ),
        },
        RouteAction::Forward(f) => Outcome::Forward(forward_info(f, upstreams)),
    };
    ex
}

/// The filter chain an `https://` request's SNI (its host) picks on an HTTPS port, with the
/// order `tls::TlsPort::find` uses (exact, longest `*.` suffix, `*`); `None` for plain text on
/// a plain port. An error says why there would be no response at all.
fn pick_chain<'a>(
    target: &Target,
    listener: &'a PortView<'a>,
) -> Result<Option<&'a ChainView<'a>>, String> {
    let port = listener.port;
    match (target.https, listener.chains.is_empty()) {
        (false, true) => Ok(None),
        (true, true) => Err(format!(
            "Gateway port {port} serves plain text: a TLS handshake gets no answer"
        )),
        (false, false) => Err(format!(
            "Gateway port {port} serves TLS: a plain-text request fails the handshake (use an https:// URL)"
        )),
        (true, false) => {
            let mut names = crate::route::HostTable::default();
            for (i, c) in listener.chains.iter().enumerate() {
                for n in c.server_names {
                    names.insert(n, i);
                }
            }
            let sni = target
                .authority
                .as_deref()
                .map(|a| a.split(':').next().unwrap_or(a))
                .unwrap_or("");
            names
                .find(sni)
                .and_then(|i| listener.chains.get(i))
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "no server on Gateway port {port} has a host matching SNI {sni:?}: the handshake is refused"
                    )
                })
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_from_url_host_param_or_host_header() {
        let t = Target::parse("POST", "http://a.example:8080/x?y=1", None, &[]).unwrap();
        assert_eq!(t.method, Method::POST);
        assert_eq!(t.authority.as_deref(), Some("a.example:8080"));
        assert_eq!(t.uri, "/x?y=1");
        assert_eq!(t.port(), Some(8080));

        let t = Target::parse("GET", "/x", Some("b.example"), &[]).unwrap();
        assert_eq!(t.authority.as_deref(), Some("b.example"));
        assert_eq!(t.port(), None);

        let h = [
            "Host: c.example:81".to_owned(),
            "x-a: 1".to_owned(),
            "x-a: 2".to_owned(),
        ];
        let t = Target::parse("GET", "/", None, &h).unwrap();
        assert_eq!(t.authority.as_deref(), Some("c.example:81"));
        assert_eq!(t.port(), Some(81));
        assert_eq!(t.headers.get_all("x-a").iter().count(), 2);

        let t = Target::parse("GET", "http://[::1]:90/", None, &[]).unwrap();
        assert_eq!(t.port(), Some(90));
        let t = Target::parse("GET", "/", Some("[::1]"), &[]).unwrap();
        assert_eq!(t.port(), None);
        // https: over TLS, Gateway port 443 unless the URL says otherwise.
        let t = Target::parse("GET", "https://a/", None, &[]).unwrap();
        assert!(t.https);
        assert_eq!((t.port(), t.gateway_port()), (None, Some(443)));
        let t = Target::parse("GET", "https://a:8443/", None, &[]).unwrap();
        assert_eq!(t.gateway_port(), Some(8443));
        let t = Target::parse("GET", "http://a/", None, &[]).unwrap();
        assert_eq!((t.https, t.gateway_port()), (false, None));
    }

    #[test]
    fn bad_targets_are_refused() {
        assert!(Target::parse("G ET", "/", None, &[]).is_err());
        assert!(Target::parse("GET", "ftp://a/", None, &[]).is_err());
        assert!(Target::parse("GET", "/", None, &["x".to_owned()]).is_err());
        assert!(Target::parse("GET", "/a b", None, &[]).is_err());
    }
}
