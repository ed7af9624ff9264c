//! Request → route decision. Synchronous, no I/O, no allocation on the common path.
//! Owns the host table, matchers, route precedence and route actions.
//! May not touch: endpoints, health, bodies, `config::*` (the compiler builds these types).

mod action;
mod cors;
mod full_match;
mod host;
mod l4;
mod matcher;
mod policy;

pub use action::*;
pub use cors::{CorsDecision, CorsPolicy};
pub use full_match::{error_reason as regex_error_reason, FullMatch};
pub use host::{HostMatch, HostTable};
pub use l4::{sni_rank, L4Cluster, L4Route, L4Table, SniRank, SniTable, TCP_IDLE_TIMEOUT};
pub use matcher::{
    Actual, Condition, HeaderCondition, HeaderTarget, Mismatch, PathMatch, QueryCondition,
    RequestMatch, StrMatch,
};
pub use policy::*;

use http::{HeaderMap, Method};

/// The routes of one listener port: virtual hosts found by `Host`, then routes in order.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub hosts: HostTable,
    pub vhosts: Vec<VirtualHost>,
}

/// One virtual host: a domain (`api.example.com`, `*.example.com`, `*`) and its ordered routes.
#[derive(Debug)]
pub struct VirtualHost {
    pub name: Box<str>,
    /// Set by a Gateway server's `tls.httpsRedirect`: plain requests get a 301 to https.
    pub require_tls: bool,
    pub routes: Vec<Route>,
}

/// One match entry of an Istio `HTTPRoute` (entries of one route are OR'ed: each becomes a Route).
#[derive(Debug, Clone)]
pub struct Route {
    /// `<vs-namespace>/<vs-name>` and the http route name / index, for logs.
    pub name: std::sync::Arc<str>,
    /// The rule this route was compiled from, for logs, the admin API and the explainer.
    pub origin: std::sync::Arc<RouteOrigin>,
    /// Which `match[]` entry of the rule (0 when the rule has none).
    pub match_index: usize,
    pub matcher: RequestMatch,
    pub action: std::sync::Arc<RouteAction>,
}

/// Where a route came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOrigin {
    /// `file.yaml#2`: the file and YAML document (shared by the rules of a resource).
    pub location: std::sync::Arc<str>,
    /// `VirtualService shop/cart` (shared likewise).
    pub resource: std::sync::Arc<str>,
    /// `spec.http[1]` (with its name, if any); for a delegated rule, the root rule and the
    /// delegate's rule it was merged with.
    pub rule: Box<str>,
}

impl std::fmt::Display for RouteOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.location, self.resource, self.rule)
    }
}

/// The parts of a request that routing looks at. Built once per request without allocation.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Raw `Host`/`:authority`, port included.
    pub authority: &'a str,
    /// Normalised path, without the query string.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// What `RouteTable::find` decided.
#[derive(Debug)]
pub enum Decision<'a> {
    /// No virtual host or no route in it: 404 `NR`.
    NoRoute,
    /// The virtual host demands TLS and the request came in plain text.
    RequireTls,
    Route(&'a Route),
}

impl RouteTable {
    /// Finds the route for a request: exact host, then longest `*.` suffix, then `*`;
    /// inside the chosen virtual host the first matching route wins (no fallback to other hosts).
    pub fn find<'a>(&'a self, req: &RequestView<'_>) -> Decision<'a> {
        let Some(vh) = self.hosts.find(req.authority) else {
            return Decision::NoRoute;
        };
        let vhost = &self.vhosts[vh];
        if vhost.require_tls && req.scheme != "https" {
            return Decision::RequireTls;
        }
        match vhost.routes.iter().find(|r| r.matcher.matches(req)) {
            Some(r) => Decision::Route(r),
            None => Decision::NoRoute,
        }
    }
}
