//! VirtualService `http[]` → route templates: matchers and actions compiled and validated once
//! per VirtualService; destinations stay unresolved until a listener port is known.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use regex::Regex;

use crate::config::{self, ConflictKind, ErrorKind, HttpRoute, StringMatch, VirtualServiceSpec};
use crate::route::{
    DirectResponse, FaultPolicy, HeaderCondition, HeaderOps, PathMatch, PathRewrite,
    QueryCondition, Redirect, RedirectPath, RedirectPort, RequestMatch, RetryPolicy, StrMatch,
};

use super::headers::{compile_headers, invalid};
use super::names::{host_error, is_dns_label, resolve_gateway_ref, resolve_short_name};
use super::resilience::{self, MirrorTemplate, Resilience};
use super::{duration_field, Ctx};

/// Istio's limit on regex length (a proxy for RE2 program size).
const MAX_REGEX: usize = 1024;
/// istiod raises Envoy's direct-response body limit to 1 MiB.
const MAX_DIRECT_BODY: usize = 1024 * 1024;

/// One `http[]` entry, compiled.
#[derive(Debug)]
pub(super) struct RouteTemplate {
    pub name: Arc<str>,
    pub matches: Vec<MatchTemplate>,
    pub action: ActionTemplate,
}

/// One `match[]` entry: per-request conditions plus the build-time ones (port, gateways, source).
#[derive(Debug)]
pub(super) struct MatchTemplate {
    pub matcher: RequestMatch,
    pub port: Option<u16>,
    /// Resolved `ns/name`; empty = the VirtualService's own `gateways`.
    pub gateways: Vec<String>,
    pub source_labels: BTreeMap<String, String>,
    pub source_namespace: Option<String>,
}

#[derive(Debug)]
pub(super) enum ActionTemplate {
    Forward(ForwardTemplate),
    Redirect(RedirectTemplate),
    Direct(Arc<DirectResponse>),
}

#[derive(Debug)]
pub(super) struct ForwardTemplate {
    pub destinations: Vec<DestinationTemplate>,
    pub rewrite: Option<Arc<PathRewrite>>,
    pub host_rewrite: Option<HeaderValue>,
    pub headers: HeaderOps,
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub fault: Option<FaultPolicy>,
    pub mirrors: Vec<MirrorTemplate>,
}

#[derive(Debug)]
pub(super) struct DestinationTemplate {
    /// Fully qualified (short names resolved against the VirtualService's namespace).
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<u16>,
    pub weight: u32,
    pub headers: HeaderOps,
    pub host_rewrite: Option<HeaderValue>,
    /// Field path, for warnings about this destination.
    pub field: String,
}

#[derive(Debug)]
pub(super) struct RedirectTemplate {
    pub redirect: Redirect,
    /// `derivePort: FROM_REQUEST_PORT`: the listener port is filled in per port.
    pub from_request_port: bool,
}

/// Compiles every `http[]` route of a VirtualService, reporting every problem.
pub(super) fn compile_http(
    vs: &VirtualServiceSpec,
    namespace: &str,
    vs_name: &str,
    cx: &mut Ctx<'_>,
) -> Vec<RouteTemplate> {
    let mut out = Vec::new();
    for (i, route) in vs.http.iter().enumerate() {
        let field = format!("spec.http[{i}]");
        let name: Arc<str> = match &route.name {
            Some(n) => format!("{namespace}/{vs_name}/{n}").into(),
            None => format!("{namespace}/{vs_name}/http[{i}]").into(),
        };
        let matches = route
            .matches
            .iter()
            .enumerate()
            .filter_map(|(j, m)| compile_match(m, &format!("{field}.match[{j}]"), namespace, cx))
            .collect::<Vec<_>>();
        let failed_matches = matches.len() != route.matches.len();
        let matches = if route.matches.is_empty() {
            vec![MatchTemplate {
                matcher: RequestMatch::default(),
                port: None,
                gateways: Vec::new(),
                source_labels: BTreeMap::new(),
                source_namespace: None,
            }]
        } else {
            matches
        };
        check_extras(route, &field, cx);
        let resilience = resilience::compile(route, &field, namespace, cx);
        let Some(action) = compile_action(route, &field, namespace, resilience, cx) else {
            continue;
        };
        if failed_matches {
            continue;
        }
        out.push(RouteTemplate {
            name,
            matches,
            action,
        });
    }
    out
}

fn compile_match(
    m: &config::HttpMatchRequest,
    field: &str,
    namespace: &str,
    cx: &mut Ctx<'_>,
) -> Option<MatchTemplate> {
    let errors_before = cx.error_count();
    let path = m.uri.as_ref().and_then(|u| {
        str_match(u, &format!("{field}.uri"), true, false, cx).map(|kind| PathMatch {
            kind,
            ignore_case: m.ignore_uri_case,
        })
    });
    let method = m
        .method
        .as_ref()
        .and_then(|s| str_match(s, &format!("{field}.method"), false, false, cx));
    let scheme = m
        .scheme
        .as_ref()
        .and_then(|s| str_match(s, &format!("{field}.scheme"), false, false, cx));
    let authority = m
        .authority
        .as_ref()
        .and_then(|s| str_match(s, &format!("{field}.authority"), false, false, cx));
    let mut headers = Vec::new();
    for (invert, key, map) in [
        (false, "headers", &m.headers),
        (true, "withoutHeaders", &m.without_headers),
    ] {
        for (name, sm) in map {
            let f = format!("{field}.{key}.{name}");
            if name.starts_with("@request.auth.claims") {
                cx.warn(
                    &f,
                    ErrorKind::Unsupported {
                        what: "JWT claim matching".into(),
                        why: "it needs RequestAuthentication; this condition never matches",
                    },
                );
            }
            let hname = match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                Ok(h) => h,
                Err(_) => {
                    cx.error(&f, invalid("header name", name, "not an HTTP token"));
                    continue;
                }
            };
            let Some(sm) = sm else {
                cx.error(
                    &f,
                    invalid("header match", "null", "use {} to match presence"),
                );
                continue;
            };
            if let Some(kind) = str_match(sm, &f, false, invert, cx) {
                headers.push(HeaderCondition {
                    name: hname,
                    kind,
                    invert,
                });
            }
        }
    }
    let mut query = Vec::new();
    for (name, sm) in &m.query_params {
        let f = format!("{field}.queryParams.{name}");
        let kind = match sm {
            None => StrMatch::Present,
            Some(sm) => match str_match(sm, &f, false, false, cx) {
                Some(k) => k,
                None => continue,
            },
        };
        query.push(QueryCondition {
            name: name.as_str().into(),
            kind,
        });
    }
    let port = match m.port {
        None => None,
        Some(p) => port_number(p, &format!("{field}.port"), cx),
    };
    if let Some(ns) = &m.source_namespace {
        if !is_dns_label(ns) {
            cx.error(
                &format!("{field}.sourceNamespace"),
                invalid("namespace", ns, "not a DNS-1123 label"),
            );
        }
    }
    let gateways = m
        .gateways
        .iter()
        .filter_map(|g| resolve_gateway_ref(g, namespace))
        .collect();
    if cx.error_count() != errors_before {
        return None;
    }
    Some(MatchTemplate {
        matcher: RequestMatch {
            path,
            method,
            scheme,
            authority,
            headers,
            query,
        },
        port,
        gateways,
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone(),
    })
}

/// Compiles a StringMatch. `allow_empty_prefix`: `uri` may use `prefix: ""`.
/// `star_is_presence`: in withoutHeaders, `regex: "*"` means presence.
fn str_match(
    sm: &StringMatch,
    field: &str,
    allow_empty_prefix: bool,
    star_is_presence: bool,
    cx: &mut Ctx<'_>,
) -> Option<StrMatch> {
    let set = [sm.exact.is_some(), sm.prefix.is_some(), sm.regex.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if set > 1 {
        cx.error(
            field,
            invalid(
                "string match",
                &format!("{sm:?}"),
                "use only one of exact, prefix, regex",
            ),
        );
        return None;
    }
    if let Some(e) = &sm.exact {
        return Some(StrMatch::Exact(e.as_str().into()));
    }
    if let Some(p) = &sm.prefix {
        if p.is_empty() && !allow_empty_prefix {
            cx.error(
                &format!("{field}.prefix"),
                invalid("prefix", p, "must not be empty"),
            );
            return None;
        }
        return Some(StrMatch::Prefix(p.as_str().into()));
    }
    if let Some(r) = &sm.regex {
        if star_is_presence && r == "*" {
            return Some(StrMatch::Present);
        }
        return compile_regex(r, &format!("{field}.regex"), true, cx).map(StrMatch::Regex);
    }
    Some(StrMatch::Present)
}

/// Compiles an RE2-syntax regex; `anchored` wraps it as a full match, as Envoy's `safe_regex`.
pub(super) fn compile_regex(
    pattern: &str,
    field: &str,
    anchored: bool,
    cx: &mut Ctx<'_>,
) -> Option<Regex> {
    if pattern.is_empty() {
        cx.error(
            field,
            ErrorKind::BadRegex {
                pattern: pattern.into(),
                reason: "empty regex".into(),
            },
        );
        return None;
    }
    if pattern.len() > MAX_REGEX {
        cx.error(
            field,
            ErrorKind::BadRegex {
                pattern: format!("{}…", &pattern[..pattern.floor_char_boundary(40)]),
                reason: format!("longer than {MAX_REGEX} characters"),
            },
        );
        return None;
    }
    let full = if anchored {
        format!("^(?:{pattern})$")
    } else {
        pattern.to_owned()
    };
    match regex::RegexBuilder::new(&full).size_limit(1 << 20).build() {
        Ok(r) => Some(r),
        Err(e) => {
            let reason = match e {
                regex::Error::Syntax(s) => s
                    .lines()
                    .last()
                    .unwrap_or("syntax error")
                    .trim()
                    .trim_start_matches("error: ")
                    .to_owned(),
                other => other.to_string(),
            };
            cx.error(
                field,
                ErrorKind::BadRegex {
                    pattern: pattern.into(),
                    reason,
                },
            );
            None
        }
    }
}

fn port_number(p: i64, field: &str, cx: &mut Ctx<'_>) -> Option<u16> {
    if (1..=65535).contains(&p) {
        Some(p as u16)
    } else {
        cx.error(
            field,
            ErrorKind::OutOfRange {
                value: p,
                min: 1,
                max: 65535,
            },
        );
        None
    }
}

fn conflict(a: &'static str, b: &'static str) -> ErrorKind {
    ErrorKind::Conflict(ConflictKind { a, b })
}

fn compile_action(
    route: &HttpRoute,
    field: &str,
    namespace: &str,
    resilience: Resilience,
    cx: &mut Ctx<'_>,
) -> Option<ActionTemplate> {
    let errors_before = cx.error_count();
    if route.delegate.is_some() {
        cx.error(
            &format!("{field}.delegate"),
            ErrorKind::NotYetSupported {
                what: "VirtualService delegation".into(),
                ignored: false,
            },
        );
        return None;
    }
    let has_route = !route.route.is_empty();
    if let Some(_r) = &route.redirect {
        for (set, other) in [
            (has_route, "route"),
            (route.fault.is_some(), "fault"),
            (route.rewrite.is_some(), "rewrite"),
            (route.direct_response.is_some(), "directResponse"),
        ] {
            if set {
                cx.error(field, conflict("redirect", other));
            }
        }
    }
    if route.direct_response.is_some() {
        for (set, other) in [
            (has_route, "route"),
            (route.fault.is_some(), "fault"),
            (route.rewrite.is_some(), "rewrite"),
        ] {
            if set {
                cx.error(field, conflict("directResponse", other));
            }
        }
    }
    if !has_route && route.redirect.is_none() && route.direct_response.is_none() {
        cx.error(
            &format!("{field}.route"),
            ErrorKind::Note("one of route, redirect or directResponse is required".into()),
        );
    }
    let (headers, header_host) =
        compile_headers(route.headers.as_ref(), &format!("{field}.headers"), cx);
    let rewrite = route
        .rewrite
        .as_ref()
        .and_then(|r| compile_rewrite(r, &format!("{field}.rewrite"), cx));
    let timeout = route
        .timeout
        .as_deref()
        .and_then(|t| duration_field(t, &format!("{field}.timeout"), cx));

    let action = if let Some(r) = &route.redirect {
        compile_redirect(r, route, &format!("{field}.redirect"), headers, cx)
            .map(ActionTemplate::Redirect)
    } else if let Some(d) = &route.direct_response {
        compile_direct(d, &format!("{field}.directResponse"), headers, cx)
            .map(|d| ActionTemplate::Direct(Arc::new(d)))
    } else {
        let mut destinations = Vec::new();
        for (i, d) in route.route.iter().enumerate() {
            let f = format!("{field}.route[{i}]");
            if let Some(dt) = compile_destination(d, &f, namespace, cx) {
                destinations.push(dt);
            }
        }
        if destinations.len() > 1 {
            if destinations.iter().all(|d| d.weight == 0) {
                cx.error(&format!("{field}.route"), ErrorKind::ZeroWeights);
            }
            // Several destinations: weight-0 entries get no traffic.
            destinations.retain(|d| d.weight > 0);
        } else if let Some(d) = destinations.first_mut() {
            // A single destination takes all traffic whatever its weight.
            d.weight = 1;
        }
        let (rewrite_uri, rewrite_host) = match rewrite {
            Some((p, h)) => (p, h),
            None => (None, None),
        };
        if rewrite_host.is_some() && header_host.is_some() {
            cx.error(
                field,
                conflict("rewrite.authority", "headers.request.set.host"),
            );
        }
        Some(ActionTemplate::Forward(ForwardTemplate {
            destinations,
            rewrite: rewrite_uri.map(Arc::new),
            host_rewrite: rewrite_host.or(header_host),
            headers,
            timeout,
            retry: resilience.retry,
            fault: resilience.fault,
            mirrors: resilience.mirrors,
        }))
    };
    if cx.error_count() != errors_before {
        return None;
    }
    action
}

fn compile_destination(
    d: &config::HttpRouteDestination,
    field: &str,
    namespace: &str,
    cx: &mut Ctx<'_>,
) -> Option<DestinationTemplate> {
    let errors_before = cx.error_count();
    let weight = match d.weight {
        Some(w) if w < 0 => {
            cx.error(
                &format!("{field}.weight"),
                invalid("weight", &w.to_string(), "must be >= 0"),
            );
            0
        }
        // Istio weights are int32.
        Some(w) => w.min(i32::MAX as i64) as u32,
        None => 0,
    };
    let (headers, host_rewrite) =
        compile_headers(d.headers.as_ref(), &format!("{field}.headers"), cx);
    let Some(dest) = &d.destination else {
        cx.error(&format!("{field}.destination"), ErrorKind::Missing);
        return None;
    };
    let (host, subset, port) = destination(dest, &format!("{field}.destination"), namespace, cx)?;
    if cx.error_count() != errors_before {
        return None;
    }
    Some(DestinationTemplate {
        host,
        subset,
        port,
        weight: if d.weight.is_none() { 0 } else { weight },
        headers,
        host_rewrite,
        field: format!("{field}.destination"),
    })
}

/// Validates a `Destination` and resolves its short host name.
pub(super) fn destination(
    dest: &config::Destination,
    field: &str,
    namespace: &str,
    cx: &mut Ctx<'_>,
) -> Option<(String, Option<String>, Option<u16>)> {
    let Some(host) = dest.host.as_deref().filter(|h| !h.is_empty()) else {
        cx.error(&format!("{field}.host"), ErrorKind::Missing);
        return None;
    };
    if host == "*" {
        cx.error(
            &format!("{field}.host"),
            invalid("destination host", host, "wildcards are not allowed"),
        );
        return None;
    }
    if let Some(why) = host_error(host) {
        cx.error(&format!("{field}.host"), invalid("host", host, why));
        return None;
    }
    if host.starts_with("*.") {
        cx.error(
            &format!("{field}.host"),
            invalid("destination host", host, "wildcards are not allowed"),
        );
        return None;
    }
    if let Some(s) = &dest.subset {
        if !is_dns_label(s) {
            cx.error(
                &format!("{field}.subset"),
                invalid("subset name", s, "not a DNS-1123 label"),
            );
            return None;
        }
    }
    let port = match dest.port.as_ref().and_then(|p| p.number) {
        Some(p) => Some(port_number(p, &format!("{field}.port.number"), cx)?),
        None => None,
    };
    Some((
        resolve_short_name(&host.to_ascii_lowercase(), namespace),
        dest.subset.clone().filter(|s| !s.is_empty()),
        port,
    ))
}

fn compile_rewrite(
    r: &config::HttpRewrite,
    field: &str,
    cx: &mut Ctx<'_>,
) -> Option<(Option<PathRewrite>, Option<HeaderValue>)> {
    if r.uri.is_some() && r.uri_regex_rewrite.is_some() {
        cx.error(field, conflict("uri", "uriRegexRewrite"));
        return None;
    }
    if r.uri.is_none() && r.uri_regex_rewrite.is_none() && r.authority.is_none() {
        cx.error(
            field,
            ErrorKind::Note("one of uri, uriRegexRewrite or authority is required".into()),
        );
        return None;
    }
    let path = if let Some(uri) = &r.uri {
        Some(PathRewrite::Matched(uri.as_str().into()))
    } else if let Some(rr) = &r.uri_regex_rewrite {
        let f = format!("{field}.uriRegexRewrite");
        let (Some(m), Some(rw)) = (&rr.pattern, &rr.rewrite) else {
            cx.error(
                &f,
                ErrorKind::Note("both match and rewrite are required".into()),
            );
            return None;
        };
        let pattern = compile_regex(m, &format!("{f}.match"), false, cx)?;
        // Envoy/RE2 write groups as \1; the regex crate as ${1}.
        let replacement = regex::Regex::new(r"\\(\d)")
            .expect("static regex")
            .replace_all(&rw.replace('$', "$$"), "$${$1}")
            .into_owned();
        Some(PathRewrite::Regex {
            pattern,
            replacement,
        })
    } else {
        None
    };
    let authority = match &r.authority {
        Some(a) => match HeaderValue::from_str(a) {
            Ok(v) if !a.is_empty() => Some(v),
            _ => {
                cx.error(
                    &format!("{field}.authority"),
                    invalid("authority", a, "not a valid host"),
                );
                return None;
            }
        },
        None => None,
    };
    Some((path, authority))
}

fn compile_redirect(
    r: &config::HttpRedirect,
    route: &HttpRoute,
    field: &str,
    headers: HeaderOps,
    cx: &mut Ctx<'_>,
) -> Option<RedirectTemplate> {
    let errors_before = cx.error_count();
    if r.uri.is_some() && r.prefix_rewrite.is_some() {
        cx.error(field, conflict("uri", "prefixRewrite"));
    }
    if r.prefix_rewrite.is_some()
        && route
            .matches
            .iter()
            .any(|m| m.uri.as_ref().is_some_and(|u| u.prefix.is_none()))
    {
        cx.error(
            &format!("{field}.prefixRewrite"),
            ErrorKind::Note(
                "prefixRewrite needs every uri match of the route to be a prefix match".into(),
            ),
        );
    }
    if r.uri.is_none()
        && r.prefix_rewrite.is_none()
        && r.authority.is_none()
        && r.scheme.is_none()
        && r.port.is_none()
        && r.derive_port.is_none()
    {
        cx.error(
            field,
            ErrorKind::Note(
                "one of uri, prefixRewrite, authority, scheme, port or derivePort is required"
                    .into(),
            ),
        );
    }
    let code = match r.redirect_code.unwrap_or(0) {
        0 => StatusCode::MOVED_PERMANENTLY,
        c @ (301 | 302 | 303 | 307 | 308) => StatusCode::from_u16(c as u16).expect("valid code"),
        c => {
            cx.error(
                &format!("{field}.redirectCode"),
                invalid(
                    "redirect code",
                    &c.to_string(),
                    "use 301, 302, 303, 307 or 308",
                ),
            );
            StatusCode::MOVED_PERMANENTLY
        }
    };
    if let Some(s) = &r.scheme {
        if s != "http" && s != "https" {
            cx.error(
                &format!("{field}.scheme"),
                invalid("scheme", s, "use http or https"),
            );
        }
    }
    let mut from_request_port = false;
    let port = match (r.port, r.derive_port.as_deref()) {
        (Some(_), Some(_)) => {
            cx.error(field, conflict("port", "derivePort"));
            RedirectPort::Keep
        }
        (Some(p), None) => match port_number(p, &format!("{field}.port"), cx) {
            Some(p) => RedirectPort::Explicit(p),
            None => RedirectPort::Keep,
        },
        (None, Some("FROM_PROTOCOL_DEFAULT")) => RedirectPort::ProtocolDefault,
        (None, Some("FROM_REQUEST_PORT")) => {
            from_request_port = true;
            RedirectPort::Keep
        }
        (None, Some(other)) => {
            cx.error(
                &format!("{field}.derivePort"),
                invalid(
                    "derivePort",
                    other,
                    "use FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT",
                ),
            );
            RedirectPort::Keep
        }
        (None, None) => RedirectPort::Keep,
    };
    if cx.error_count() != errors_before {
        return None;
    }
    let path = match (&r.uri, &r.prefix_rewrite) {
        (Some(u), _) => RedirectPath::Replace(u.as_str().into()),
        (None, Some(p)) => RedirectPath::Prefix(p.as_str().into()),
        (None, None) => RedirectPath::Keep,
    };
    Some(RedirectTemplate {
        redirect: Redirect {
            code,
            scheme: r.scheme.as_deref().map(Into::into),
            authority: r.authority.as_deref().map(Into::into),
            port,
            path,
            headers,
        },
        from_request_port,
    })
}

fn compile_direct(
    d: &config::HttpDirectResponse,
    field: &str,
    headers: HeaderOps,
    cx: &mut Ctx<'_>,
) -> Option<DirectResponse> {
    let Some(status) = d.status else {
        cx.error(&format!("{field}.status"), ErrorKind::Missing);
        return None;
    };
    if !(200..=600).contains(&status) {
        cx.error(
            &format!("{field}.status"),
            ErrorKind::OutOfRange {
                value: status,
                min: 200,
                max: 599,
            },
        );
        return None;
    }
    let status = StatusCode::from_u16(status as u16).expect("in range");
    let body = match &d.body {
        None => Bytes::new(),
        Some(b) => match (&b.string, &b.bytes) {
            (Some(_), Some(_)) => {
                cx.error(&format!("{field}.body"), conflict("string", "bytes"));
                return None;
            }
            (Some(s), None) => Bytes::from(s.clone()),
            (None, Some(b64)) => match base64::engine::general_purpose::STANDARD.decode(b64.trim())
            {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    cx.error(
                        &format!("{field}.body.bytes"),
                        invalid("base64", "…", &e.to_string()),
                    );
                    return None;
                }
            },
            (None, None) => Bytes::new(),
        },
    };
    if body.len() > MAX_DIRECT_BODY {
        cx.error(
            &format!("{field}.body"),
            invalid(
                "body",
                &format!("{} bytes", body.len()),
                "larger than 1 MiB",
            ),
        );
        return None;
    }
    if body.len() > 100 * 1024 {
        cx.warn(
            &format!("{field}.body"),
            ErrorKind::Note("direct response body is larger than 100 KiB".into()),
        );
    }
    Some(DirectResponse {
        status,
        body,
        headers,
    })
}

/// Fields not applied yet (CORS): validated now so a bad value is caught at load time.
fn check_extras(route: &HttpRoute, field: &str, cx: &mut Ctx<'_>) {
    if let Some(c) = &route.cors_policy {
        let f = format!("{field}.corsPolicy");
        for (i, o) in c.allow_origins.iter().enumerate() {
            let _ = str_match(o, &format!("{f}.allowOrigins[{i}]"), false, false, cx);
        }
        for (i, m) in c.allow_methods.iter().enumerate() {
            if !matches!(
                m.as_str(),
                "GET"
                    | "HEAD"
                    | "POST"
                    | "PUT"
                    | "PATCH"
                    | "DELETE"
                    | "CONNECT"
                    | "OPTIONS"
                    | "TRACE"
                    | "*"
            ) {
                cx.error(
                    &format!("{f}.allowMethods[{i}]"),
                    invalid("method", m, "not an HTTP method"),
                );
            }
        }
        if let Some(t) = &c.max_age {
            duration_field(t, &format!("{f}.maxAge"), cx);
        }
    }
}
