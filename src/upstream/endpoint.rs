//! One upstream endpoint and its live state: requests in flight, outlier counters and ejection.
//! Every field is an atomic, so the request path never locks. May not touch: routing, `config::*`.
//!
//! The state sits behind its own `Arc` so a DNS refresh that keeps an address keeps its state.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use http::uri::Authority;

/// A live endpoint.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `ip:port`, the authority used for the upstream connection pool.
    pub authority: Authority,
    /// Load-balancing weight (ServiceEntry endpoint `weight`), at least 1.
    pub weight: u32,
    pub state: Arc<EndpointState>,
}

/// Mutable per-endpoint state, shared by every request and kept across DNS refreshes and reloads.
#[derive(Debug, Default)]
pub struct EndpointState {
    /// Attempts started and not finished (response body not done). Read by LEAST_REQUEST.
    active: AtomicU32,
    /// Consecutive 5xx results (outlier detection).
    pub(super) consecutive_5xx: AtomicU32,
    /// Consecutive 502/503/504 results.
    pub(super) consecutive_gateway: AtomicU32,
    /// Consecutive local-origin failures (only counted apart with `splitExternalLocalOriginErrors`).
    pub(super) consecutive_local: AtomicU32,
    /// End of the current or last ejection, in ms since the cluster epoch; 0 = never ejected.
    pub(super) ejected_until: AtomicU64,
    /// Envoy's ejection-time multiplier: the next ejection lasts `base × (backoff + 1)`.
    pub(super) backoff: AtomicU32,
    /// How many times this endpoint was ejected (for logs and tests).
    pub(super) ejections: AtomicU64,
}

/// Counts one attempt as in flight until dropped.
#[derive(Debug)]
pub struct ActiveRequest(Arc<Endpoint>);

// === impl Endpoint ===

impl Endpoint {
    pub fn new(addr: SocketAddr, weight: u32, state: Arc<EndpointState>) -> Arc<Endpoint> {
        // A socket address always formats as a valid authority; the fallback is never taken.
        let authority = Authority::try_from(addr.to_string().as_str())
            .unwrap_or_else(|_| Authority::from_static("invalid"));
        Arc::new(Endpoint {
            addr,
            authority,
            weight: weight.max(1),
            state,
        })
    }

    /// Attempts in flight to this endpoint.
    pub fn active(&self) -> u32 {
        self.state.active.load(Ordering::Relaxed)
    }

    /// Marks one attempt in flight; it ends when the returned guard is dropped.
    pub fn start_request(self: &Arc<Self>) -> ActiveRequest {
        self.state.active.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(self.clone())
    }

    /// Is the endpoint ejected at `now_ms` (ms since the cluster epoch)?
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        now_ms < self.state.ejected_until.load(Ordering::Acquire)
    }

    /// How many times outlier detection ejected this endpoint.
    pub fn ejections(&self) -> u64 {
        self.state.ejections.load(Ordering::Relaxed)
    }
}

// === impl ActiveRequest ===

impl ActiveRequest {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.state.active.fetch_sub(1, Ordering::Relaxed);
    }
}
