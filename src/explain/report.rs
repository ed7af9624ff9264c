//! What the explainer found, as plain serialisable data (`--json`, `format=json`).

use serde::Serialize;

/// Everything the explainer found, serialisable for `--json` / `format=json`.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub request: RequestInfo,
    /// The Gateway port that would take the request (`None`: no listener on that port).
    pub listener: Option<u16>,
    /// Every Gateway port served.
    pub listener_ports: Vec<u16>,
    /// An HTTPS port's filter chain the SNI (the URL's host) picked: Istio's name for it.
    pub filter_chain: Option<String>,
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
    /// An `https://` URL: the request comes over TLS with the host as SNI.
    pub https: bool,
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
    /// A TLS port and no chain for the SNI, or TLS and plain text mismatched: no response, the
    /// handshake fails (or never starts).
    NoFilterChain {
        reason: String,
    },
    /// A TLS-terminated TCP server (`protocol: TLS`): the decrypted stream is tunnelled by its
    /// `tcp` route; HTTP routes do not apply.
    TcpTunnel {
        filter_chain: String,
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
