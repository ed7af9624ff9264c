//! The templates VirtualServices compile to before any listener port is known: HTTP routes
//! (matchers, actions, unresolved destinations) and `tls:`/`tcp:` rules. Plain data, shared by
//! the files that make them (`routes`, `matchers`, `actions`, `resilience`, `l4_routes`,
//! `virtual_services`) and the ones that instantiate them per port (`tables`, `listeners`,
//! `clusters`).
//! May not touch: validation, compilation (this file has no functions).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use crate::route::{
    CorsPolicy, DirectResponse, FaultPolicy, HeaderOps, PathRewrite, Redirect, RequestMatch,
    RetryPolicy, RouteOrigin,
};

/// A VirtualService after validation: resolved hosts and gateways plus its route templates.
pub(super) struct VsTemplate {
    pub hosts: Vec<String>,
    pub gateways: Vec<String>,
    pub routes: Vec<RouteTemplate>,
    /// `tls:` rules (SNI passthrough) and `tcp:` rules.
    pub tls: Vec<L4RuleTemplate>,
    pub tcp: Vec<L4RuleTemplate>,
}

/// One `http[]` entry, compiled.
#[derive(Debug)]
pub(super) struct RouteTemplate {
    pub name: Arc<str>,
    pub origin: Arc<RouteOrigin>,
    pub matches: Vec<MatchTemplate>,
    pub action: ActionTemplate,
}

/// One `match[]` entry: per-request conditions plus the build-time ones (port, gateways, source).
#[derive(Debug)]
pub(super) struct MatchTemplate {
    /// Index in the rule's `match[]`.
    pub index: usize,
    pub matcher: RequestMatch,
    pub port: Option<u16>,
    /// `match.gateways`, resolved to `ns/name` (`mesh` dropped): the match applies only at these
    /// gateways. `None` (the field is empty): at every gateway the VirtualService is bound to.
    pub gateways: Option<Vec<String>>,
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
    pub host_rewrite: Option<Box<HeaderValue>>,
    pub headers: Arc<HeaderOps>,
    pub timeout: Option<Duration>,
    pub retry: Arc<RetryPolicy>,
    pub fault: Option<Box<FaultPolicy>>,
    pub mirrors: Vec<MirrorTemplate>,
    pub cors: Option<Arc<CorsPolicy>>,
}

#[derive(Debug)]
pub(super) struct DestinationTemplate {
    /// Fully qualified (short names resolved against the VirtualService's namespace).
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<u16>,
    pub weight: u32,
    pub headers: Arc<HeaderOps>,
    pub host_rewrite: Option<Box<HeaderValue>>,
    /// Field path, for warnings about this destination.
    pub field: String,
}

#[derive(Debug)]
pub(super) struct RedirectTemplate {
    pub redirect: Redirect,
    /// `derivePort: FROM_REQUEST_PORT`: the listener port is filled in per port.
    pub from_request_port: bool,
}

/// One `tls[i]` or `tcp[i]` rule after validation.
#[derive(Debug)]
pub(super) struct L4RuleTemplate {
    /// `<ns>/<vs>` and `spec.tls[i]` / `spec.tcp[i]`.
    pub name: Arc<str>,
    pub matches: Vec<L4MatchTemplate>,
    pub destinations: Vec<DestinationTemplate>,
}

/// One `match[]` entry; an empty match list means "any".
#[derive(Debug, Default)]
pub(super) struct L4MatchTemplate {
    pub port: Option<u16>,
    /// Resolved `ns/name`; `None` when the match lists none.
    pub gateways: Option<Vec<String>>,
    pub source_labels: BTreeMap<String, String>,
    pub source_namespace: Option<String>,
    /// Lower-case; only for `tls` rules.
    pub sni_hosts: Vec<String>,
}

/// Which list a rule came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum L4Kind {
    Tls,
    Tcp,
}

/// A mirror destination before its cluster is resolved.
#[derive(Debug)]
pub(super) struct MirrorTemplate {
    pub destination: DestinationTemplate,
    pub per_million: u32,
}
