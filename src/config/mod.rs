//! Istio YAML → typed model. Owns the serde types for Gateway, VirtualService, DestinationRule and
//! ServiceEntry, and loading them from disk with file/document/field context.
//! May not touch: hyper, tokio, runtime types; no defaults resolution, no cross-references.

mod content_hash;
mod destination_rule;
mod diff;
pub mod duration;
mod error;
pub mod fast_yaml;
mod gateway;
mod load;
mod served;
mod service_entry;
mod virtual_service;

use std::collections::BTreeMap;
use std::fmt;

pub use destination_rule::*;
pub use diff::Diff;
pub use error::{ConfigError, ConflictKind, ErrorKind, Report, ResourceId, Source};
pub use gateway::*;
pub use load::{load_path, load_str};
pub use served::Served;
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
    /// Hash of the whole YAML document: tells a changed resource from an unchanged one on reload.
    pub hash: u64,
    /// The text of the file it was read from, to read it again ([`Served`]).
    pub text: FileText,
    pub spec: T,
}

/// A config file's text as read (shared by the resources read from it).
#[derive(Clone, Default)]
pub struct FileText(pub std::sync::Arc<str>);

impl fmt::Debug for FileText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileText({} bytes)", self.0.len())
    }
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

    /// One hash over every resource (identity and content), in load order: equal fingerprints
    /// mean a reload would change nothing.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for (id, hash) in self.identities() {
            id.hash(&mut h);
            hash.hash(&mut h);
        }
        h.finish()
    }

    /// Every resource's identity with its content hash.
    pub fn identities(&self) -> impl Iterator<Item = (ResourceId, u64)> + '_ {
        self.each().map(|(id, r)| (id, r.hash))
    }

    /// Every resource, in load order: its identity and what was read with it (the spec left out).
    pub(crate) fn each(&self) -> impl Iterator<Item = (ResourceId, Read<'_>)> + '_ {
        fn of<T>(kind: Kind, list: &[Resource<T>]) -> impl Iterator<Item = (ResourceId, Read<'_>)> {
            list.iter().map(move |r| {
                let id = ResourceId {
                    kind,
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                };
                let read = Read {
                    hash: r.hash,
                    source: &r.source,
                    text: &r.text,
                };
                (id, read)
            })
        }
        of(Kind::Gateway, &self.gateways)
            .chain(of(Kind::VirtualService, &self.virtual_services))
            .chain(of(Kind::DestinationRule, &self.destination_rules))
            .chain(of(Kind::ServiceEntry, &self.service_entries))
    }
}

/// What [`Resources::each`] gives of a resource besides its identity.
pub(crate) struct Read<'a> {
    pub hash: u64,
    pub source: &'a Source,
    pub text: &'a FileText,
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
/// `tests/e2e/config_fields.rs` checks that every field of the serde model is listed.
pub const KNOWN_FIELDS: &[&str] = &[
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
    "matchLabels",
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
    "ports",
    "location",
    "resolution",
    "endpoints",
    "address",
    "locality",
    "network",
    "serviceAccount",
];
