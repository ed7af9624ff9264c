//! Istio YAML → typed model. Owns the serde types for Gateway, VirtualService, DestinationRule and
//! ServiceEntry, and loading them from disk with file/document/field context.
//! May not touch: hyper, tokio, runtime types; no defaults resolution, no cross-references.

mod destination_rule;
pub mod duration;
mod error;
mod gateway;
mod load;
mod service_entry;
mod virtual_service;

use std::collections::BTreeMap;
use std::fmt;

pub use destination_rule::*;
pub use error::{ConfigError, ConflictKind, ErrorKind, Report, ResourceId, Source};
pub use gateway::*;
pub use load::{load_path, load_str};
pub use service_entry::*;
pub use virtual_service::*;

/// The four Istio networking kinds meshgate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Gateway,
    VirtualService,
    DestinationRule,
    ServiceEntry,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Gateway => "Gateway",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
        })
    }
}

/// One resource as read from disk: identity, where it came from, and its typed `spec`.
#[derive(Debug, Clone)]
pub struct Resource<T> {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub source: Source,
    pub spec: T,
}

/// Everything loaded from a config path, in load order (files sorted by path, documents in order).
/// Identity clashes are already resolved: a later definition replaced the earlier one.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub gateways: Vec<Resource<GatewaySpec>>,
    pub virtual_services: Vec<Resource<VirtualServiceSpec>>,
    pub destination_rules: Vec<Resource<DestinationRuleSpec>>,
    pub service_entries: Vec<Resource<ServiceEntrySpec>>,
}

impl Resources {
    pub fn len(&self) -> usize {
        self.gateways.len()
            + self.virtual_services.len()
            + self.destination_rules.len()
            + self.service_entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Istio's `StringMatch`: one of exact/prefix/regex, or none of them (= presence).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StringMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

/// Istio's `Percent`: `{value: 12.5}`.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Percent {
    pub value: f64,
}

/// Istio's `PortSelector`.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PortSelector {
    pub number: Option<i64>,
}

/// Every field name of the model, for "did you mean" suggestions on unknown fields.
pub(crate) const KNOWN_FIELDS: &[&str] = &[
    "servers",
    "selector",
    "port",
    "hosts",
    "bind",
    "tls",
    "name",
    "defaultEndpoint",
    "number",
    "protocol",
    "targetPort",
    "httpsRedirect",
    "mode",
    "serverCertificate",
    "privateKey",
    "caCertificates",
    "caCrl",
    "credentialName",
    "credentialNames",
    "tlsCertificates",
    "caCertCredentialName",
    "subjectAltNames",
    "verifyCertificateSpki",
    "verifyCertificateHash",
    "minProtocolVersion",
    "maxProtocolVersion",
    "cipherSuites",
    "insecureSkipVerify",
    "gateways",
    "http",
    "tcp",
    "exportTo",
    "match",
    "route",
    "redirect",
    "directResponse",
    "delegate",
    "rewrite",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirrors",
    "mirrorPercentage",
    "mirrorPercent",
    "mirror_percent",
    "corsPolicy",
    "headers",
    "uri",
    "scheme",
    "method",
    "authority",
    "withoutHeaders",
    "queryParams",
    "ignoreUriCase",
    "sourceLabels",
    "sourceNamespace",
    "statPrefix",
    "exact",
    "prefix",
    "regex",
    "destination",
    "weight",
    "host",
    "subset",
    "derivePort",
    "redirectCode",
    "prefixRewrite",
    "status",
    "body",
    "string",
    "bytes",
    "uriRegexRewrite",
    "attempts",
    "perTryTimeout",
    "retryOn",
    "retryRemoteLocalities",
    "retryIgnorePreviousHosts",
    "backoff",
    "delay",
    "abort",
    "fixedDelay",
    "exponentialDelay",
    "percentage",
    "percent",
    "httpStatus",
    "grpcStatus",
    "http2Error",
    "value",
    "allowOrigins",
    "allowOrigin",
    "allowMethods",
    "allowHeaders",
    "exposeHeaders",
    "maxAge",
    "allowCredentials",
    "unmatchedPreflights",
    "request",
    "response",
    "set",
    "add",
    "remove",
    "namespace",
    "destinationSubnets",
    "sniHosts",
    "trafficPolicy",
    "subsets",
    "labels",
    "workloadSelector",
    "loadBalancer",
    "connectionPool",
    "outlierDetection",
    "portLevelSettings",
    "tunnel",
    "proxyProtocol",
    "retryBudget",
    "simple",
    "consistentHash",
    "localityLbSetting",
    "warmup",
    "warmupDurationSecs",
    "httpHeaderName",
    "httpCookie",
    "useSourceIp",
    "httpQueryParameterName",
    "ringHash",
    "maglev",
    "minimumRingSize",
    "tableSize",
    "path",
    "ttl",
    "attributes",
    "maxConnections",
    "connectTimeout",
    "tcpKeepalive",
    "maxConnectionDuration",
    "idleTimeout",
    "http1MaxPendingRequests",
    "http2MaxRequests",
    "maxRequestsPerConnection",
    "maxRetries",
    "h2UpgradePolicy",
    "useClientProtocol",
    "maxConcurrentStreams",
    "http2KeepAlive",
    "probes",
    "time",
    "interval",
    "consecutive5xxErrors",
    "consecutiveGatewayErrors",
    "consecutiveErrors",
    "splitExternalLocalOriginErrors",
    "consecutiveLocalOriginFailures",
    "baseEjectionTime",
    "maxEjectionPercent",
    "minHealthPercent",
    "clientCertificate",
    "sni",
    "addresses",
    "location",
    "resolution",
    "endpoints",
    "address",
    "locality",
    "network",
    "serviceAccount",
];
