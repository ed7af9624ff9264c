//! Circuit breakers of a cluster (DestinationRule `connectionPool`): concurrent requests, busy
//! connections, requests waiting for a connection, and concurrent retries. Over a limit a request
//! is refused at once (503 overflow); nothing queues without bound. May not touch: endpoint choice.
//!
//! `maxConnections` is enforced as the number of requests holding an HTTP/1.1 connection (an
//! HTTP/1.1 connection carries one request at a time, so that is the number of busy connections;
//! idle pooled connections are reused before a new one is opened). A request finding every allowed
//! connection busy waits as *pending*, up to `http1MaxPendingRequests`. hyper-util's pool cannot
//! cap its own connection count, and counting here keeps the limit exact where a client can see it
//! (concurrency at the upstream). HTTP/2 clusters multiplex one connection per endpoint, so the
//! connection limit does not apply to them; `http2MaxRequests` does.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Compiled circuit-breaker limits. `u32::MAX` = unlimited (Istio's 2^32−1 default for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolLimits {
    /// `tcp.maxConnections`.
    pub max_connections: u32,
    /// `http.http1MaxPendingRequests`.
    pub max_pending: u32,
    /// `http.http2MaxRequests`: concurrent requests of any protocol.
    pub max_requests: u32,
    /// `http.maxRetries`: concurrent retries across the cluster.
    pub max_retries: u32,
}

/// A request refused by a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// Live counters of one cluster.
#[derive(Debug)]
pub(super) struct PoolState {
    limits: PoolLimits,
    requests: AtomicU32,
    pending: AtomicU32,
    retries: AtomicU32,
    /// One permit per allowed busy HTTP/1.1 connection; `None` when unlimited or HTTP/2.
    connections: Option<Arc<Semaphore>>,
    /// Totals since the cluster was created (Envoy's `upstream_rq_retry`, `upstream_rq_pending_overflow`).
    retries_total: AtomicU64,
    overflows_total: AtomicU64,
}

/// A point-in-time view of a cluster's circuit-breaker counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Requests admitted and not finished.
    pub requests: u32,
    /// Requests waiting for a connection.
    pub pending: u32,
    /// Retries running.
    pub retries: u32,
    /// Retries started since the cluster was created.
    pub retries_total: u64,
    /// Requests refused by a circuit breaker since the cluster was created.
    pub overflows_total: u64,
}

/// Holds a request's place under the limits until dropped (end of the response body).
#[derive(Debug)]
pub struct Admission {
    pool: Arc<PoolState>,
    _connection: Option<OwnedSemaphorePermit>,
}

/// Holds one of the cluster's concurrent retries until dropped.
#[derive(Debug)]
pub struct RetryPermit(Arc<PoolState>);

/// Decrements a counter on drop (a pending request that stopped waiting).
struct Waiting<'a>(&'a AtomicU32);

// === impl PoolLimits ===

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_connections: u32::MAX,
            max_pending: u32::MAX,
            max_requests: u32::MAX,
            max_retries: u32::MAX,
        }
    }
}

// === impl PoolState ===

impl PoolState {
    pub fn new(limits: PoolLimits, http1: bool) -> PoolState {
        let connections = (http1 && limits.max_connections != u32::MAX)
            .then(|| Arc::new(Semaphore::new(limits.max_connections.max(1) as usize)));
        PoolState {
            limits,
            requests: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            retries: AtomicU32::new(0),
            connections,
            retries_total: AtomicU64::new(0),
            overflows_total: AtomicU64::new(0),
        }
    }

    /// Admits one request: counts it against `http2MaxRequests`, then waits for a connection
    /// slot if all are busy (as a pending request).
    ///
    /// # Errors
    /// `Overflow` when a limit is already reached.
    pub async fn admit(self: &Arc<Self>) -> Result<Admission, Overflow> {
        let admitted = self.admit_inner().await;
        if admitted.is_err() {
            self.overflows_total.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    async fn admit_inner(self: &Arc<Self>) -> Result<Admission, Overflow> {
        if !increment_below(&self.requests, self.limits.max_requests) {
            return Err(Overflow);
        }
        let mut admission = Admission {
            pool: self.clone(),
            _connection: None,
        };
        if let Some(sem) = &self.connections {
            let permit = match sem.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    if !increment_below(&self.pending, self.limits.max_pending) {
                        return Err(Overflow);
                    }
                    let _waiting = Waiting(&self.pending);
                    sem.clone().acquire_owned().await.map_err(|_| Overflow)?
                }
            };
            admission._connection = Some(permit);
        }
        Ok(admission)
    }

    /// Takes one of the cluster's concurrent retries, if `maxRetries` allows.
    pub fn try_retry(self: &Arc<Self>) -> Option<RetryPermit> {
        if !increment_below(&self.retries, self.limits.max_retries) {
            self.overflows_total.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.retries_total.fetch_add(1, Ordering::Relaxed);
        Some(RetryPermit(self.clone()))
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            requests: self.requests.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            retries_total: self.retries_total.load(Ordering::Relaxed),
            overflows_total: self.overflows_total.load(Ordering::Relaxed),
        }
    }
}

/// Adds one unless the counter is already at `limit`.
fn increment_below(counter: &AtomicU32, limit: u32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.pool.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for RetryPermit {
    fn drop(&mut self) {
        self.0.retries.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: u32, max_pending: u32, max_requests: u32) -> PoolLimits {
        PoolLimits {
            max_connections,
            max_pending,
            max_requests,
            max_retries: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn requests_over_the_limit_overflow() {
        let pool = Arc::new(PoolState::new(limits(u32::MAX, u32::MAX, 2), true));
        let a = pool.admit().await.unwrap();
        let _b = pool.admit().await.unwrap();
        assert_eq!(pool.admit().await.unwrap_err(), Overflow);
        drop(a);
        assert!(pool.admit().await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn busy_connections_make_requests_pend_then_overflow() {
        let pool = Arc::new(PoolState::new(limits(1, 1, u32::MAX), true));
        let first = pool.admit().await.unwrap();
        let p = pool.clone();
        let pending = tokio::spawn(async move { p.admit().await.map(|_| ()) });
        // Wait (bounded) until the second request is pending.
        for _ in 0..100 {
            if pool.pending.load(Ordering::Acquire) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.pending.load(Ordering::Acquire), 1);
        assert_eq!(
            pool.admit().await.unwrap_err(),
            Overflow,
            "pending queue is full"
        );
        drop(first);
        assert_eq!(pending.await.unwrap(), Ok(()));
        assert_eq!(pool.stats().requests, 0);
    }

    #[test]
    fn retries_are_limited() {
        let pool = Arc::new(PoolState::new(limits(u32::MAX, u32::MAX, u32::MAX), false));
        let r = pool.try_retry().unwrap();
        assert!(pool.try_retry().is_none());
        drop(r);
        assert!(pool.try_retry().is_some());
    }
}
