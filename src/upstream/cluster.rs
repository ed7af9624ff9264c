//! A cluster (`outbound|port|subset|host`): its compiled spec and its live endpoint list.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::Authority;

use super::dns::Resolver;

/// Everything needed to build a cluster; compared on reload so unchanged clusters keep their state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterSpec {
    pub key: String,
    pub host: String,
    pub port: u16,
    pub subset: Option<String>,
    pub discovery: Discovery,
    pub protocol: Protocol,
    pub connect_timeout: Duration,
    /// Set when the DestinationRule asks for something meshgate cannot do yet (TLS origination):
    /// requests fail with 503 rather than silently going out in plain text.
    pub unsupported: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Discovery {
    /// ServiceEntry `STATIC`: the listed endpoints (already filtered by subset labels).
    Static(Vec<EndpointSpec>),
    /// ServiceEntry `DNS` (or a Kubernetes Service name): every name is resolved and every address
    /// becomes an endpoint. For a Kubernetes name, the candidates are tried in order and the first
    /// that resolves is used (`reviews.ns.svc.cluster.local`, then `reviews`).
    Dns {
        names: Vec<(String, u16, u32)>,
        first_only: bool,
    },
    /// ServiceEntry `NONE`: a cluster with no endpoints (503 `UH`).
    Empty,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointSpec {
    pub addr: SocketAddr,
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http1,
    Http2,
}

/// A live endpoint.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `ip:port`, the authority used for the upstream connection pool.
    pub authority: Authority,
    pub weight: u32,
}

/// A live cluster: the spec plus the endpoint list (swapped by DNS refresh, never locked).
#[derive(Debug)]
pub struct Cluster {
    pub spec: ClusterSpec,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    /// DNS clusters that have not resolved (yet or at all) behave as "no cluster" (503 `NC`).
    resolved: std::sync::atomic::AtomicBool,
    /// Woken after each DNS attempt, so a snapshot can wait for the first answer.
    first_attempt: tokio::sync::Notify,
    attempted: std::sync::atomic::AtomicBool,
    next: AtomicUsize,
}

/// Outcome of picking an endpoint.
#[derive(Debug)]
pub enum Pick {
    Endpoint(Arc<Endpoint>),
    /// The cluster has no usable endpoint: 503 `no healthy upstream` (`UH`).
    NoHealthy,
    /// A DNS cluster whose name does not resolve: the cluster does not exist (503 `NC`).
    NoCluster,
}

// === impl Cluster ===

impl Cluster {
    fn new(spec: ClusterSpec) -> Self {
        let (endpoints, resolved) = match &spec.discovery {
            Discovery::Static(eps) => (
                eps.iter().map(|e| endpoint(e.addr, e.weight)).collect(),
                true,
            ),
            Discovery::Empty => (Vec::new(), true),
            Discovery::Dns { .. } => (Vec::new(), false),
        };
        Cluster {
            spec,
            endpoints: ArcSwap::from_pointee(endpoints),
            resolved: std::sync::atomic::AtomicBool::new(resolved),
            first_attempt: tokio::sync::Notify::new(),
            attempted: std::sync::atomic::AtomicBool::new(resolved),
            next: AtomicUsize::new(0),
        }
    }

    pub(super) fn notify_resolved(&self) {
        self.attempted.store(true, Ordering::Release);
        self.first_attempt.notify_waiters();
    }

    /// Waits until the first DNS attempt finished (at once for non-DNS clusters), at most `limit`.
    pub async fn ready(&self, limit: Duration) {
        let wait = async {
            loop {
                let notified = self.first_attempt.notified();
                if self.attempted.load(Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }

    /// Picks the next endpoint, weighted round robin over the current list.
    pub fn pick(&self) -> Pick {
        let eps = self.endpoints.load();
        if eps.is_empty() {
            return if self.resolved.load(Ordering::Relaxed) {
                Pick::NoHealthy
            } else {
                Pick::NoCluster
            };
        }
        let total: u64 = eps.iter().map(|e| u64::from(e.weight)).sum();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if total == eps.len() as u64 {
            return Pick::Endpoint(eps[n % eps.len()].clone());
        }
        let mut slot = n as u64 % total;
        for e in eps.iter() {
            if slot < u64::from(e.weight) {
                return Pick::Endpoint(e.clone());
            }
            slot -= u64::from(e.weight);
        }
        Pick::Endpoint(eps[0].clone())
    }

    /// Replaces the endpoint list (DNS refresh). An empty answer keeps the last good list.
    pub fn set_resolved(&self, addrs: Vec<(SocketAddr, u32)>) {
        if addrs.is_empty() {
            return;
        }
        let eps = addrs.into_iter().map(|(a, w)| endpoint(a, w)).collect();
        self.endpoints.store(Arc::new(eps));
        self.resolved.store(true, Ordering::Relaxed);
    }

    pub fn endpoint_count(&self) -> usize {
        self.endpoints.load().len()
    }
}

fn endpoint(addr: SocketAddr, weight: u32) -> Arc<Endpoint> {
    let authority = Authority::try_from(addr.to_string().as_str())
        .expect("a socket address is a valid authority");
    Arc::new(Endpoint {
        addr,
        authority,
        weight: weight.max(1),
    })
}

/// Live clusters by spec. Building a snapshot asks the registry for each cluster; an unchanged
/// spec gets the same live cluster back (endpoints, DNS results and later pool state survive
/// reloads). Clusters no snapshot uses any more are dropped with the last snapshot holding them.
#[derive(Debug, Default)]
pub struct Registry {
    // Only touched while building a snapshot, never on the request path.
    live: Mutex<HashMap<ClusterSpec, Weak<Cluster>>>,
}

impl Registry {
    pub fn get_or_create(&self, spec: &ClusterSpec, resolver: &Resolver) -> Arc<Cluster> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, w| w.strong_count() > 0);
        if let Some(c) = live.get(spec).and_then(Weak::upgrade) {
            return c;
        }
        let cluster = Arc::new(Cluster::new(spec.clone()));
        if let Discovery::Dns { names, first_only } = &spec.discovery {
            resolver.watch(Arc::downgrade(&cluster), names.clone(), *first_only);
        }
        live.insert(spec.clone(), Arc::downgrade(&cluster));
        cluster
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(eps: Vec<(u16, u32)>) -> ClusterSpec {
        ClusterSpec {
            key: "k".into(),
            host: "h".into(),
            port: 80,
            subset: None,
            discovery: Discovery::Static(
                eps.into_iter()
                    .map(|(p, w)| EndpointSpec {
                        addr: SocketAddr::from(([127, 0, 0, 1], p)),
                        weight: w,
                    })
                    .collect(),
            ),
            protocol: Protocol::Http1,
            connect_timeout: Duration::from_secs(10),
            unsupported: None,
        }
    }

    fn port(p: Pick) -> u16 {
        match p {
            Pick::Endpoint(e) => e.addr.port(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn round_robin_is_exact() {
        let c = Cluster::new(spec(vec![(1, 1), (2, 1), (3, 1)]));
        let got: Vec<u16> = (0..6).map(|_| port(c.pick())).collect();
        assert_eq!(got, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn weights_are_honoured() {
        let c = Cluster::new(spec(vec![(1, 3), (2, 1)]));
        let ones = (0..400).filter(|_| port(c.pick()) == 1).count();
        assert_eq!(ones, 300);
    }

    #[test]
    fn empty_static_is_no_healthy() {
        let c = Cluster::new(spec(vec![]));
        assert!(matches!(c.pick(), Pick::NoHealthy));
    }
}
