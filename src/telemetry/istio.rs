//! Istio's standard HTTP metrics (`istio_requests_total`, `istio_request_duration_milliseconds`,
//! `istio_request_bytes`, `istio_response_bytes`) with the labels an ingress gateway reports
//! (`reporter="source"`). Every label value comes from config (the destination cluster) or from
//! a small closed set (status code, flags, protocol), never from the request's own strings, so an
//! unknown Host or a random path cannot create a series. Metric handles are cached per label set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use metrics::{Counter, Histogram, Label};

/// Labels of a destination, computed once per cluster.
#[derive(Debug)]
pub struct Destination {
    id: u64,
    labels: Vec<Label>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Destination {
    /// A destination host (FQDN as routed) and subset. A Kubernetes service name
    /// (`name.ns.svc.<domain>`) gives `destination_service_name`/`_namespace`; any other host is
    /// its own name with namespace `unknown`, as Istio reports ServiceEntry hosts.
    pub fn new(host: &str, subset: Option<&str>) -> Destination {
        let mut parts = host.split('.');
        let (name, ns) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(ns), Some("svc")) => (n.to_owned(), ns.to_owned()),
            _ => (host.to_owned(), "unknown".to_owned()),
        };
        let version = subset.unwrap_or("unknown").to_owned();
        Destination::from_labels(vec![
            ("destination_service", host.to_owned()),
            ("destination_service_name", name.clone()),
            ("destination_service_namespace", ns.clone()),
            ("destination_canonical_service", name),
            ("destination_canonical_revision", version.clone()),
            ("destination_version", version),
            ("destination_workload", "unknown".into()),
            ("destination_workload_namespace", ns),
            ("destination_app", "unknown".into()),
            ("destination_principal", "unknown".into()),
            ("destination_cluster", "unknown".into()),
        ])
    }

    /// No destination (no route, no cluster): every destination label is `unknown`.
    pub fn unknown() -> Destination {
        Destination::from_labels(
            [
                "destination_service",
                "destination_service_name",
                "destination_service_namespace",
                "destination_canonical_service",
                "destination_canonical_revision",
                "destination_version",
                "destination_workload",
                "destination_workload_namespace",
                "destination_app",
                "destination_principal",
                "destination_cluster",
            ]
            .into_iter()
            .map(|k| (k, "unknown".to_owned()))
            .collect(),
        )
    }

    fn from_labels(labels: Vec<(&'static str, String)>) -> Destination {
        Destination {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            labels: labels.into_iter().map(|(k, v)| Label::new(k, v)).collect(),
        }
    }
}

/// One finished request, for the Istio metrics.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub destination: &'a Arc<Destination>,
    /// `true` for gRPC (`request_protocol="grpc"`), else `http`.
    pub grpc: bool,
    pub response_code: u16,
    /// `grpc-status` of a gRPC response, if any.
    pub grpc_status: Option<u16>,
    /// `%RESPONSE_FLAGS%` and its bit set (the bits key the handle cache).
    pub flags: &'a str,
    pub flag_bits: u32,
    pub duration_ms: f64,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

type Key = (u64, bool, u16, Option<u16>, u32);

struct Handles {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
    /// Keeps the destination (and so its id) alive as long as its handles.
    _destination: Arc<Destination>,
}

/// The metric handles by label set, and the gateway's own (source) labels.
pub struct IstioMetrics {
    source: Vec<Label>,
    handles: RwLock<HashMap<Key, Arc<Handles>, foldhash::fast::RandomState>>,
}

impl std::fmt::Debug for IstioMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IstioMetrics").finish_non_exhaustive()
    }
}

impl IstioMetrics {
    /// `workload`/`app` name the gateway (`istio-ingressgateway`), `namespace` where it runs.
    pub fn new(workload: &str, namespace: &str) -> IstioMetrics {
        let source = [
            ("reporter", "source"),
            ("source_workload", workload),
            ("source_workload_namespace", namespace),
            ("source_canonical_service", workload),
            ("source_canonical_revision", "latest"),
            ("source_app", workload),
            ("source_version", "unknown"),
            ("source_principal", "unknown"),
            ("source_cluster", "Kubernetes"),
            ("connection_security_policy", "unknown"),
        ]
        .into_iter()
        .map(|(k, v)| Label::new(k, v.to_owned()))
        .collect();
        IstioMetrics {
            source,
            handles: RwLock::new(HashMap::default()),
        }
    }

    pub fn record(&self, s: &Sample<'_>) {
        let key: Key = (
            s.destination.id,
            s.grpc,
            s.response_code,
            s.grpc_status,
            s.flag_bits,
        );
        let cached = self.handles.read().ok().and_then(|m| m.get(&key).cloned());
        let h = match cached {
            Some(h) => h,
            None => {
                let h = Arc::new(self.handles_for(s));
                if let Ok(mut m) = self.handles.write() {
                    m.insert(key, h.clone());
                }
                h
            }
        };
        h.requests.increment(1);
        h.duration.record(s.duration_ms);
        h.request_bytes.record(s.request_bytes as f64);
        h.response_bytes.record(s.response_bytes as f64);
    }

    fn handles_for(&self, s: &Sample<'_>) -> Handles {
        let mut labels = self.source.clone();
        labels.extend(s.destination.labels.iter().cloned());
        labels.push(Label::new(
            "request_protocol",
            if s.grpc { "grpc" } else { "http" },
        ));
        labels.push(Label::new("response_code", s.response_code.to_string()));
        labels.push(Label::new(
            "grpc_response_status",
            s.grpc_status.map(|g| g.to_string()).unwrap_or_default(),
        ));
        labels.push(Label::new("response_flags", s.flags.to_owned()));
        Handles {
            requests: metrics::counter!("istio_requests_total", labels.clone()),
            duration: metrics::histogram!("istio_request_duration_milliseconds", labels.clone()),
            request_bytes: metrics::histogram!("istio_request_bytes", labels.clone()),
            response_bytes: metrics::histogram!("istio_response_bytes", labels),
            _destination: s.destination.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(d: &'a Destination, key: &str) -> &'a str {
        d.labels
            .iter()
            .find(|l| l.key() == key)
            .map(|l| l.value())
            .unwrap_or("")
    }

    #[test]
    fn kubernetes_service_names_split_into_name_and_namespace() {
        let d = Destination::new("reviews.shop.svc.cluster.local", Some("v2"));
        assert_eq!(
            value(&d, "destination_service"),
            "reviews.shop.svc.cluster.local"
        );
        assert_eq!(value(&d, "destination_service_name"), "reviews");
        assert_eq!(value(&d, "destination_service_namespace"), "shop");
        assert_eq!(value(&d, "destination_version"), "v2");
        let e = Destination::new("api.example.com", None);
        assert_eq!(value(&e, "destination_service_name"), "api.example.com");
        assert_eq!(value(&e, "destination_service_namespace"), "unknown");
        assert_eq!(value(&e, "destination_version"), "unknown");
        assert_ne!(d.id, e.id);
    }
}
