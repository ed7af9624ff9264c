//! DNS discovery: resolves a cluster's names, then refreshes them in the background
//! (record TTL, capped at Istio's 60 s `dnsRefreshRate`; 5 s after a failure).

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use hickory_resolver::TokioAsyncResolver;

use super::Cluster;

/// Istio's default `dnsRefreshRate`.
const MAX_REFRESH: Duration = Duration::from_secs(60);
const MIN_REFRESH: Duration = Duration::from_secs(1);
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// A shared DNS resolver (system configuration: /etc/resolv.conf and /etc/hosts).
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<TokioAsyncResolver>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Resolver {
    pub fn from_system() -> Self {
        let inner = TokioAsyncResolver::tokio_from_system_conf().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the system DNS configuration; using defaults");
            TokioAsyncResolver::tokio(Default::default(), Default::default())
        });
        Resolver {
            inner: Arc::new(inner),
        }
    }

    /// Resolves the names once. With `first_only`, the first name that resolves wins (Kubernetes
    /// short-name candidates); otherwise every name contributes its addresses.
    /// Returns the endpoints and how long the answer may be cached.
    pub async fn resolve(
        &self,
        names: &[(String, u16, u32)],
        first_only: bool,
    ) -> (Vec<(SocketAddr, u32)>, Duration) {
        let mut out = Vec::new();
        let mut ttl = MAX_REFRESH;
        for (name, port, weight) in names {
            // A literal IP needs no lookup.
            if let Ok(ip) = name.parse() {
                out.push((SocketAddr::new(ip, *port), *weight));
            } else {
                // Absolute name: the candidates are already fully qualified or deliberately short.
                match self.inner.lookup_ip(name.as_str()).await {
                    Ok(lookup) => {
                        let valid = lookup
                            .valid_until()
                            .saturating_duration_since(std::time::Instant::now());
                        ttl = ttl.min(valid.max(MIN_REFRESH));
                        let mut addrs: Vec<_> = lookup.iter().filter(|ip| ip.is_ipv4()).collect();
                        if addrs.is_empty() {
                            addrs = lookup.iter().collect();
                        }
                        out.extend(
                            addrs
                                .into_iter()
                                .map(|ip| (SocketAddr::new(ip, *port), *weight)),
                        );
                    }
                    Err(e) => tracing::debug!(name, error = %e, "DNS lookup failed"),
                }
            }
            if first_only && !out.is_empty() {
                break;
            }
        }
        if out.is_empty() {
            ttl = RETRY_AFTER_FAILURE;
        }
        out.sort();
        out.dedup();
        (out, ttl)
    }

    /// Keeps `cluster`'s endpoints fresh until the cluster is dropped.
    pub fn watch(&self, cluster: Weak<Cluster>, names: Vec<(String, u16, u32)>, first_only: bool) {
        let this = self.clone();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            loop {
                let (addrs, ttl) = this.resolve(&names, first_only).await;
                let Some(c) = cluster.upgrade() else { return };
                if addrs.is_empty() {
                    tracing::warn!(cluster = %c.spec.key, "DNS: no addresses for {:?}", names.iter().map(|n| &n.0).collect::<Vec<_>>());
                }
                c.set_resolved(addrs);
                c.notify_resolved();
                drop(c);
                tokio::time::sleep(ttl).await;
            }
        });
    }
}
