//! What a matched route does: forward to weighted clusters, redirect, or answer directly.
//! Plus the per-route request/response header operations.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use regex::Regex;

/// Index of a cluster in the snapshot's cluster list.
pub type ClusterId = usize;

#[derive(Debug)]
pub enum RouteAction {
    Forward(Forward),
    Redirect(Redirect),
    Direct(DirectResponse),
}

/// Forward to one of several clusters, picked at random by weight.
#[derive(Debug)]
pub struct Forward {
    pub clusters: Vec<WeightedCluster>,
    /// Sum of `clusters[..].weight`; at least 1.
    pub total_weight: u64,
    pub rewrite: Option<Arc<PathRewrite>>,
    /// `rewrite.authority` or a `host` header set on the route.
    /// Boxed: most routes have none.
    pub host_rewrite: Option<Box<HeaderValue>>,
    /// Shared: most routes have none ([`HeaderOps::none`]).
    pub headers: Arc<HeaderOps>,
    /// Route timeout (`None` = no timeout, as istiod configures): covers every attempt and
    /// back-off, up to the end of the response.
    pub timeout: Option<Duration>,
    /// `retries`, or Istio's default policy.
    /// Shared: most routes have Istio's default.
    pub retry: Arc<super::RetryPolicy>,
    pub fault: Option<Box<super::FaultPolicy>>,
    /// `mirror`/`mirrors`, resolved to clusters.
    pub mirrors: Vec<super::Mirror>,
    /// `corsPolicy`. Only forwarding routes have one: Envoy's CORS filter skips redirect and
    /// direct-response routes.
    pub cors: Option<Arc<super::CorsPolicy>>,
}

#[derive(Debug)]
pub struct WeightedCluster {
    /// `None` when the destination names no cluster (unknown host/subset/port): 503 `NC`.
    pub cluster: Option<ClusterId>,
    /// `outbound|<port>|<subset>|<host>`, for logs.
    pub key: Arc<str>,
    pub weight: u32,
    /// Destination-level header operations, applied after the route-level ones. Shared: most
    /// destinations have none ([`HeaderOps::none`]).
    pub headers: Arc<HeaderOps>,
    /// Boxed: most routes have none.
    pub host_rewrite: Option<Box<HeaderValue>>,
}

/// How the path sent upstream is rewritten.
#[derive(Debug)]
pub enum PathRewrite {
    /// `rewrite.uri`: replaces the part of the path matched by the route's path condition.
    Matched(Box<str>),
    /// `rewrite.uriRegexRewrite`: global regex replace on the path.
    Regex { pattern: Regex, replacement: String },
}

#[derive(Debug, Clone)]
pub struct Redirect {
    pub code: StatusCode,
    pub scheme: Option<Box<str>>,
    pub authority: Option<Box<str>>,
    pub port: RedirectPort,
    pub path: RedirectPath,
    pub headers: HeaderOps,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectPort {
    /// Keep what the request had (subject to the scheme-change rule).
    Keep,
    /// No port in the Location (`derivePort: FROM_PROTOCOL_DEFAULT`).
    ProtocolDefault,
    Explicit(u16),
}

#[derive(Debug, Clone)]
pub enum RedirectPath {
    Keep,
    /// Replace the whole path (query kept unless the new uri has one).
    Replace(Box<str>),
    /// Replace the matched prefix.
    Prefix(Box<str>),
}

#[derive(Debug, Clone)]
pub struct DirectResponse {
    pub status: StatusCode,
    pub body: Bytes,
    pub headers: HeaderOps,
}

/// Header operations of one direction: set (overwrite), add (append), remove.
#[derive(Debug, Default, Clone)]
pub struct HeaderOps {
    pub request: HeaderOpList,
    pub response: HeaderOpList,
}

#[derive(Debug, Default, Clone)]
pub struct HeaderOpList {
    pub set: Vec<(HeaderName, HeaderTemplate)>,
    pub add: Vec<(HeaderName, HeaderTemplate)>,
    pub remove: Vec<HeaderName>,
}

/// A header value, possibly with Envoy substitution variables (`%REQ(x)%` …).
#[derive(Debug, Clone)]
pub enum HeaderTemplate {
    Static(HeaderValue),
    Dynamic(Vec<Segment>),
}

#[derive(Debug, Clone)]
pub enum Segment {
    Literal(Box<str>),
    RemoteAddress,
    RemoteAddressWithoutPort,
    Request(HeaderName),
    Hostname,
    StartTime,
}

/// Values a dynamic header template may use.
pub struct TemplateContext<'a> {
    pub remote: std::net::SocketAddr,
    pub request_headers: &'a http::HeaderMap,
    pub hostname: &'a str,
    /// When the request arrived (`%START_TIME%`, rendered as Envoy does).
    pub start_time: std::time::SystemTime,
}

impl HeaderOps {
    /// No operations, one instance for every route and destination without `headers`: inline,
    /// the two lists are 144 bytes, paid by every route of a large config.
    pub fn none() -> Arc<HeaderOps> {
        static NONE: std::sync::LazyLock<Arc<HeaderOps>> =
            std::sync::LazyLock::new(|| Arc::new(HeaderOps::default()));
        NONE.clone()
    }

    /// `self` behind an `Arc`; the shared [`HeaderOps::none`] when it is empty.
    pub fn shared(self) -> Arc<HeaderOps> {
        if self.request.is_empty() && self.response.is_empty() {
            HeaderOps::none()
        } else {
            Arc::new(self)
        }
    }
}

impl HeaderOpList {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Does any value use a `%VARIABLE%`?
    pub fn is_dynamic(&self) -> bool {
        self.set
            .iter()
            .chain(&self.add)
            .any(|(_, t)| matches!(t, HeaderTemplate::Dynamic(_)))
    }

    /// Applies remove, then set, then add (Envoy order: removals first, appends last).
    pub fn apply(&self, headers: &mut http::HeaderMap, ctx: &TemplateContext<'_>) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            if let Some(v) = value.render(ctx) {
                headers.insert(name.clone(), v);
            }
        }
        for (name, value) in &self.add {
            if let Some(v) = value.render(ctx) {
                headers.append(name.clone(), v);
            }
        }
    }
}

impl HeaderTemplate {
    pub fn render(&self, ctx: &TemplateContext<'_>) -> Option<HeaderValue> {
        match self {
            HeaderTemplate::Static(v) => Some(v.clone()),
            HeaderTemplate::Dynamic(segments) => {
                let mut out = String::new();
                for s in segments {
                    match s {
                        Segment::Literal(l) => out.push_str(l),
                        Segment::RemoteAddress => out.push_str(&ctx.remote.to_string()),
                        Segment::RemoteAddressWithoutPort => {
                            out.push_str(&ctx.remote.ip().to_string())
                        }
                        Segment::Request(name) => {
                            if let Some(v) = ctx.request_headers.get(name) {
                                out.push_str(v.to_str().unwrap_or(""));
                            }
                        }
                        Segment::Hostname => out.push_str(ctx.hostname),
                        Segment::StartTime => {
                            out.push_str(&crate::telemetry::access_log::format_time(ctx.start_time))
                        }
                    }
                }
                HeaderValue::from_str(&out).ok()
            }
        }
    }
}
