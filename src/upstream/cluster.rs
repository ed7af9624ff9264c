//! A cluster (`outbound|port|subset|host`): its compiled spec and its live state (endpoint list,
//! outlier ejections, circuit breakers, connection pools). May not touch: routing, `config::*`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use super::balancer::{Hosts, LbPolicy};
use super::client::ClusterClient;
use super::dns::Resolver;
use super::endpoint::{Endpoint, EndpointState};
use super::outlier::{Class, Detector, OutlierPolicy};
use super::pool::{Admission, Overflow, PoolLimits, PoolState, PoolStats, RetryPermit};
use super::settings::{ConnectionSettings, Protocol};
use super::transport::{OriginTls, Origination};

/// Everything needed to build a cluster; compared on reload so unchanged clusters keep their state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterSpec {
    pub key: String,
    pub host: String,
    pub port: u16,
    pub subset: Option<String>,
    pub discovery: Discovery,
    pub protocol: Protocol,
    /// Connect timeout, keepalive, idle timeout, requests per connection.
    pub connection: ConnectionSettings,
    /// `loadBalancer`. Default is LEAST_REQUEST.
    pub lb: LbPolicy,
    /// `outlierDetection`; `None` = no outlier detection.
    pub outlier: Option<OutlierPolicy>,
    /// `connectionPool` circuit breakers.
    pub limits: PoolLimits,
    /// DestinationRule `tls` SIMPLE / MUTUAL / ISTIO_MUTUAL: connections originate TLS. Default
    /// is plain text.
    pub tls: Option<OriginTls>,
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

/// A live cluster: the spec, the endpoint list (swapped by DNS refresh, never locked), and the
/// state that outlives requests: outlier ejections, circuit-breaker counters, connection pools.
#[derive(Debug)]
pub struct Cluster {
    pub spec: ClusterSpec,
    hosts: ArcSwap<Hosts>,
    /// DNS clusters that have not resolved (yet or at all) behave as "no cluster" (503 `NC`).
    resolved: AtomicBool,
    /// Woken after each DNS attempt, so a snapshot can wait for the first answer.
    first_attempt: tokio::sync::Notify,
    attempted: AtomicBool,
    /// Round-robin position.
    next: AtomicUsize,
    /// Time zero of ejection times (tokio's clock, so paused-time tests control it).
    epoch: Instant,
    detector: Option<Detector>,
    /// The latest ejection end among the endpoints (ms since `epoch`): after it, none is ejected
    /// and picking skips the ejection checks.
    ejected_hint: AtomicU64,
    pool: Arc<PoolState>,
    client: ClusterClient,
    /// Istio's destination labels for this cluster's requests.
    pub telemetry: Arc<crate::telemetry::Destination>,
    /// Envoy's per-cluster request counters.
    pub stats: ClusterStats,
}

/// Envoy's per-cluster counters (`envoy_cluster_*{cluster_name}`), registered once per cluster.
#[derive(Debug)]
pub struct ClusterStats {
    pub rq_total: metrics::Counter,
    pub rq_retry: metrics::Counter,
    pub rq_timeout: metrics::Counter,
    pub rq_pending_overflow: metrics::Counter,
}

impl ClusterStats {
    fn new(key: &str) -> ClusterStats {
        let name = key.to_owned();
        ClusterStats {
            rq_total: metrics::counter!("envoy_cluster_upstream_rq_total", "cluster_name" => name.clone()),
            rq_retry: metrics::counter!("envoy_cluster_upstream_rq_retry", "cluster_name" => name.clone()),
            rq_timeout: metrics::counter!("envoy_cluster_upstream_rq_timeout", "cluster_name" => name.clone()),
            rq_pending_overflow: metrics::counter!("envoy_cluster_upstream_rq_pending_overflow", "cluster_name" => name),
        }
    }
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
    #[cfg(test)]
    fn new(spec: ClusterSpec) -> Self {
        Self::with_tls(spec, None)
    }

    fn with_tls(spec: ClusterSpec, tls: Option<Result<Origination, String>>) -> Self {
        let (endpoints, resolved) = match &spec.discovery {
            Discovery::Static(eps) => (
                eps.iter()
                    .map(|e| Endpoint::new(e.addr, e.weight, Arc::default()))
                    .collect(),
                true,
            ),
            Discovery::Empty => (Vec::new(), true),
            Discovery::Dns { .. } => (Vec::new(), false),
        };
        let hosts = Hosts::new(endpoints, &spec.lb);
        Cluster {
            hosts: ArcSwap::from_pointee(hosts),
            resolved: AtomicBool::new(resolved),
            first_attempt: tokio::sync::Notify::new(),
            attempted: AtomicBool::new(resolved),
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            detector: spec.outlier.clone().map(Detector::new),
            ejected_hint: AtomicU64::new(0),
            pool: Arc::new(PoolState::new(
                spec.limits,
                spec.protocol == Protocol::Http1,
            )),
            client: ClusterClient::new(spec.protocol, &spec.connection, tls),
            telemetry: Arc::new(crate::telemetry::Destination::new(
                &spec.host,
                spec.subset.as_deref(),
            )),
            stats: ClusterStats::new(&spec.key),
            spec,
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

    /// Picks an endpoint with the cluster's load-balancing policy, skipping ejected endpoints
    /// (unless too few are healthy: panic mode) and, when another is usable, those in `exclude`
    /// (the endpoints earlier attempts of this request used). `hash` is the request's
    /// consistent-hash key, when the policy has one.
    pub fn pick(&self, hash: Option<u64>, exclude: &[SocketAddr]) -> Pick {
        let hosts = self.hosts.load();
        if hosts.list.is_empty() {
            return if self.resolved.load(Ordering::Relaxed) {
                Pick::NoHealthy
            } else {
                Pick::NoCluster
            };
        }
        let now = self.now_ms();
        let mut honour_ejections = false;
        if let Some(d) = &self.detector {
            if now < self.ejected_hint.load(Ordering::Acquire) {
                let total = hosts.list.len();
                let healthy = hosts.list.iter().filter(|e| !e.is_ejected(now)).count();
                honour_ejections = healthy < total && !d.panic(healthy, total);
                if honour_ejections && healthy == 0 {
                    return Pick::NoHealthy;
                }
            }
        }
        let healthy = |e: &Endpoint| !honour_ejections || !e.is_ejected(now);
        let policy = &self.spec.lb;
        let fresh = if exclude.is_empty() {
            None
        } else {
            hosts.choose(policy, &self.next, hash, &|e| {
                healthy(e) && !exclude.contains(&e.addr)
            })
        };
        match fresh.or_else(|| hosts.choose(policy, &self.next, hash, &healthy)) {
            Some(i) => Pick::Endpoint(hosts.list[i].clone()),
            None => Pick::NoHealthy,
        }
    }

    /// Feeds one attempt's result to outlier detection (no-op without an `outlierDetection`).
    pub fn record(&self, ep: &Endpoint, class: &Class) {
        let Some(d) = &self.detector else { return };
        let hosts = self.hosts.load();
        if d.record(&hosts.list, ep, class, self.now_ms()) {
            let until = ep.state.ejected_until.load(Ordering::Acquire);
            self.ejected_hint.fetch_max(until, Ordering::AcqRel);
        }
    }

    /// Admits one attempt under the circuit breakers (`connectionPool` limits).
    ///
    /// # Errors
    /// `Overflow` when a limit is reached: 503 with `x-envoy-overloaded`.
    pub async fn admit(&self) -> Result<Admission, Overflow> {
        self.pool.admit().await
    }

    /// Takes a retry slot (`maxRetries`); `None` when the cluster has too many retries running.
    pub fn try_retry(&self) -> Option<RetryPermit> {
        self.pool.try_retry()
    }

    /// Circuit-breaker counters: requests in flight, pending, retries.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// The cluster's HTTP client (its own connection pools).
    pub fn client(&self) -> &ClusterClient {
        &self.client
    }

    /// The current endpoints (for logs and tests).
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.hosts.load().list.clone()
    }

    /// Total ejections over the cluster's current endpoints.
    pub fn ejections(&self) -> u64 {
        self.hosts.load().list.iter().map(|e| e.ejections()).sum()
    }

    /// Replaces the endpoint list (DNS refresh). An empty answer keeps the last good list.
    /// Endpoints keep their state (in-flight counts, ejections) when their address stays.
    pub fn set_resolved(&self, addrs: Vec<(SocketAddr, u32)>) {
        if addrs.is_empty() {
            return;
        }
        let old = self.hosts.load();
        let unchanged = old.list.len() == addrs.len()
            && old
                .list
                .iter()
                .zip(&addrs)
                .all(|(e, (a, w))| e.addr == *a && e.weight == (*w).max(1));
        if unchanged {
            // Most refreshes: keep the list (and any hash table) as it is.
            self.resolved.store(true, Ordering::Relaxed);
            return;
        }
        let state: HashMap<SocketAddr, &Arc<EndpointState>> =
            old.list.iter().map(|e| (e.addr, &e.state)).collect();
        let eps = addrs
            .into_iter()
            .map(|(a, w)| {
                Endpoint::new(
                    a,
                    w,
                    state.get(&a).map(|s| (*s).clone()).unwrap_or_default(),
                )
            })
            .collect();
        self.hosts.store(Arc::new(Hosts::new(eps, &self.spec.lb)));
        self.resolved.store(true, Ordering::Relaxed);
    }

    pub fn endpoint_count(&self) -> usize {
        self.hosts.load().list.len()
    }

    /// Each endpoint's state now, for the admin API.
    /// `false` for a DNS cluster whose names have not resolved: requests get 503 `NC`.
    pub fn is_resolved(&self) -> bool {
        self.resolved.load(Ordering::Acquire)
    }

    pub fn endpoint_health(&self) -> Vec<EndpointHealth> {
        let now = self.now_ms();
        self.hosts
            .load()
            .list
            .iter()
            .map(|e| EndpointHealth {
                addr: e.addr,
                weight: e.weight,
                active: e.active(),
                ejected: e.is_ejected(now),
                ejections: e.ejections(),
            })
            .collect()
    }

    fn now_ms(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_millis() as u64
    }
}

/// One endpoint as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointHealth {
    pub addr: SocketAddr,
    pub weight: u32,
    /// Attempts in flight.
    pub active: u32,
    /// Ejected by outlier detection right now.
    pub ejected: bool,
    /// Ejections so far.
    pub ejections: u64,
}

/// Live clusters by spec. Building a snapshot asks the registry for each cluster; an unchanged
/// spec gets the same live cluster back (endpoints, DNS results and later pool state survive
/// reloads). Clusters no snapshot uses any more are dropped with the last snapshot holding them.
#[derive(Debug, Default)]
pub struct Registry {
    // Only touched while building a snapshot, never on the request path. By the hash of their
    // spec (the spec itself is in the cluster: keys that were whole specs cost 2.7 MB with 2,000
    // clusters).
    live: Mutex<HashMap<u64, Vec<Weak<Cluster>>>>,
}

impl Registry {
    /// Forgets the clusters no snapshot holds any more (a snapshot build starts with this).
    pub fn prune(&self) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, same| {
            same.retain(|w| w.strong_count() > 0);
            !same.is_empty()
        });
    }

    /// The live cluster for `spec`; a new one's TLS config comes from `tls` (called once per
    /// new cluster, never for a reused one).
    pub fn get_or_create(
        &self,
        spec: &ClusterSpec,
        resolver: &Resolver,
        tls: &dyn Fn(&OriginTls) -> Result<Origination, String>,
    ) -> Arc<Cluster> {
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            spec.hash(&mut h);
            h.finish()
        };
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let found = live.get(&hash).and_then(|same| {
            same.iter()
                .filter_map(Weak::upgrade)
                .find(|c| c.spec == *spec)
        });
        if let Some(c) = found {
            return c;
        }
        let cluster = Arc::new(Cluster::with_tls(spec.clone(), spec.tls.as_ref().map(tls)));
        if let Discovery::Dns { names, first_only } = &spec.discovery {
            resolver.watch(Arc::downgrade(&cluster), names.clone(), *first_only);
        }
        live.entry(hash).or_default().push(Arc::downgrade(&cluster));
        cluster
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn spec(eps: Vec<(u16, u32)>) -> ClusterSpec {
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
            connection: ConnectionSettings::default(),
            lb: LbPolicy::RoundRobin,
            outlier: None,
            limits: PoolLimits::default(),
            tls: None,
        }
    }

    fn port(p: Pick) -> u16 {
        match p {
            Pick::Endpoint(e) => e.addr.port(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_registry_reuses_a_cluster_while_a_snapshot_holds_it() {
        let (registry, resolver) = (Registry::default(), Resolver::from_system());
        let get = |spec: &ClusterSpec| {
            registry.get_or_create(spec, &resolver, &|_| Err("no TLS here".into()))
        };
        let a = spec(vec![(1, 1)]);
        let first = get(&a);
        assert!(
            Arc::ptr_eq(&first, &get(&a.clone())),
            "same spec: same cluster"
        );
        let mut b = a.clone();
        b.discovery = Discovery::Static(vec![EndpointSpec {
            addr: SocketAddr::from(([127, 0, 0, 1], 2)),
            weight: 1,
        }]);
        let other = get(&b);
        assert!(
            !Arc::ptr_eq(&first, &other),
            "changed spec: another cluster"
        );
        // Dropped by every snapshot, then pruned: a new one, and nothing dead kept.
        drop(first);
        registry.prune();
        assert_eq!(registry.live.lock().unwrap().len(), 1);
        assert_eq!(get(&a).spec, a);
        assert!(Arc::ptr_eq(&other, &get(&b)));
    }

    #[test]
    fn round_robin_is_exact() {
        let c = Cluster::new(spec(vec![(1, 1), (2, 1), (3, 1)]));
        let got: Vec<u16> = (0..6).map(|_| port(c.pick(None, &[]))).collect();
        assert_eq!(got, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn weights_are_honoured() {
        let c = Cluster::new(spec(vec![(1, 3), (2, 1)]));
        let ones = (0..400).filter(|_| port(c.pick(None, &[])) == 1).count();
        assert_eq!(ones, 300);
    }

    #[test]
    fn empty_static_is_no_healthy() {
        let c = Cluster::new(spec(vec![]));
        assert!(matches!(c.pick(None, &[]), Pick::NoHealthy));
    }

    #[test]
    fn retries_avoid_previous_hosts_when_they_can() {
        let c = Cluster::new(spec(vec![(1, 1), (2, 1)]));
        let one = SocketAddr::from(([127, 0, 0, 1], 1));
        for _ in 0..10 {
            assert_eq!(port(c.pick(None, &[one])), 2);
        }
        let two = SocketAddr::from(([127, 0, 0, 1], 2));
        assert!(matches!(c.pick(None, &[one, two]), Pick::Endpoint(_)));
    }

    #[test]
    fn dns_refresh_keeps_endpoint_state_by_address() {
        let mut s = spec(vec![]);
        s.discovery = Discovery::Dns {
            names: vec![("h".into(), 80, 1)],
            first_only: false,
        };
        let c = Cluster::new(s);
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        let b = SocketAddr::from(([127, 0, 0, 1], 2));
        c.set_resolved(vec![(a, 1), (b, 1)]);
        let busy = c.endpoints()[0].start_request();
        c.set_resolved(vec![(b, 1), (a, 1)]);
        let eps = c.endpoints();
        let ea = eps.iter().find(|e| e.addr == a).unwrap();
        assert_eq!(ea.active(), 1, "state of a survived the refresh");
        drop(busy);
        assert_eq!(ea.active(), 0);
    }
}
