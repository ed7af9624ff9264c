//! Outlier detection (DestinationRule `outlierDetection`) as Envoy runs it: consecutive-error
//! counters per endpoint, ejection bounded by `maxEjectionPercent`, ejection time growing with each
//! ejection of the same host (capped at 300 s) and shrinking while it stays healthy.
//! May not touch: requests, routing; results arrive already classified (`Class`).
//!
//! Envoy sweeps every `interval` on a timer; here the same schedule is computed lazily from the
//! cluster epoch (tokio's clock), so there is no task and paused-time tests see exact times:
//! an ejection ends at the first sweep at least `base × n` after it began, and each sweep a
//! returned host spends healthy takes one off `n`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::endpoint::Endpoint;

/// Envoy's `max_ejection_time` default.
pub const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// Compiled `outlierDetection`. Thresholds are `None` when that detector is off.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutlierPolicy {
    /// `consecutive5xxErrors`. Default is 5; an explicit 0 turns it off.
    pub consecutive_5xx: Option<u32>,
    /// `consecutiveGatewayErrors`. Default is off.
    pub consecutive_gateway: Option<u32>,
    /// `consecutiveLocalOriginFailures` when `splitExternalLocalOriginErrors` is set (default 5);
    /// `None` = not split: local-origin failures count as 5xx and gateway errors.
    pub consecutive_local: Option<u32>,
    /// Sweep interval. Default is 10 s.
    pub interval: Duration,
    /// `baseEjectionTime`. Default is 30 s.
    pub base_ejection: Duration,
    /// Default is 10 (%); one host may always be ejected.
    pub max_ejection_percent: u32,
    /// Panic threshold: below this share of healthy hosts, ejections are ignored. Default is 0 (off).
    pub min_health_percent: u32,
}

/// What one attempt produced, decided once by `proxy::classify` and read by retries (which
/// conditions match), outlier detection (which counters move) and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Response headers arrived; `grpc` is a `grpc-status` found in those headers.
    Response {
        status: u16,
        grpc: Option<u32>,
        /// The upstream sent `x-envoy-ratelimited`.
        ratelimited: bool,
    },
    /// TCP connect refused, unreachable or timed out: the request never left.
    ConnectFailure,
    /// The upstream closed or reset before response headers.
    Reset {
        /// HTTP/2 `REFUSED_STREAM`: the upstream did not process the request.
        refused_stream: bool,
    },
    /// No response headers within the per-try (or route) timeout.
    Timeout,
    /// Refused by a local circuit breaker: never counted against the endpoint.
    Overflow,
    /// Any other local failure (no endpoint, bad request): not the endpoint's doing.
    Local,
}

/// What a result means to the counters.
enum Verdict {
    Success,
    /// An upstream response with an error code.
    Error {
        gateway: bool,
    },
    /// Connect failure, reset or timeout: the endpoint gave no response.
    LocalOrigin,
    Ignore,
}

// === impl Class ===

impl Class {
    fn verdict(&self) -> Verdict {
        match *self {
            Class::Response { status, grpc, .. } => {
                // A gRPC status in the headers is judged by its HTTP equivalent, as Envoy does.
                let code = grpc.map(grpc_to_http).unwrap_or(status);
                if (500..600).contains(&code) {
                    Verdict::Error {
                        gateway: matches!(code, 502..=504),
                    }
                } else {
                    Verdict::Success
                }
            }
            Class::ConnectFailure | Class::Reset { .. } | Class::Timeout => Verdict::LocalOrigin,
            Class::Overflow | Class::Local => Verdict::Ignore,
        }
    }
}

/// gRPC status → HTTP status (Envoy's `Grpc::Utility::grpcToHttpStatus`).
fn grpc_to_http(code: u32) -> u16 {
    match code {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

/// The cluster's detector: the policy plus the lock that makes ejection decisions one at a time.
#[derive(Debug)]
pub(super) struct Detector {
    pub policy: OutlierPolicy,
    /// Held only while deciding an ejection (rare), never on the request path otherwise.
    eject_lock: Mutex<()>,
}

// === impl Detector ===

impl Detector {
    pub fn new(policy: OutlierPolicy) -> Detector {
        Detector {
            policy,
            eject_lock: Mutex::new(()),
        }
    }

    /// Records one result for `ep`; ejects it when a threshold is reached. Returns whether it
    /// ejected. `hosts` is the cluster's current endpoint list, `now` ms since the epoch.
    pub fn record(&self, hosts: &[Arc<Endpoint>], ep: &Endpoint, class: &Class, now: u64) -> bool {
        if ep.is_ejected(now) {
            // Envoy resets the counters when the host returns; results in between do not matter.
            return false;
        }
        let p = &self.policy;
        let s = &ep.state;
        let trigger = match class.verdict() {
            Verdict::Ignore => false,
            Verdict::Success => {
                s.consecutive_5xx.store(0, Ordering::Release);
                s.consecutive_gateway.store(0, Ordering::Release);
                s.consecutive_local.store(0, Ordering::Release);
                false
            }
            Verdict::LocalOrigin if p.consecutive_local.is_some() => {
                hit(&s.consecutive_local, p.consecutive_local)
            }
            // Not split: a failure to get any response counts as a 503/504 would.
            Verdict::LocalOrigin => self.count_error(ep, true),
            Verdict::Error { gateway } => {
                // A real response: the connection worked.
                s.consecutive_local.store(0, Ordering::Release);
                self.count_error(ep, gateway)
            }
        };
        trigger && self.eject(hosts, ep, now)
    }

    /// Moves the 5xx and gateway-error counters (Envoy's `putHttpResponseCode` for a 5xx).
    fn count_error(&self, ep: &Endpoint, gateway: bool) -> bool {
        let p = &self.policy;
        let s = &ep.state;
        let by_gateway = if gateway {
            hit(&s.consecutive_gateway, p.consecutive_gateway)
        } else {
            s.consecutive_gateway.store(0, Ordering::Release);
            false
        };
        let by_5xx = hit(&s.consecutive_5xx, p.consecutive_5xx);
        by_gateway || by_5xx
    }

    /// Ejects `ep` unless that would eject more than `maxEjectionPercent` of the hosts
    /// (one host may always be ejected).
    fn eject(&self, hosts: &[Arc<Endpoint>], ep: &Endpoint, now: u64) -> bool {
        let _one_at_a_time = self.eject_lock.lock().unwrap_or_else(|e| e.into_inner());
        if ep.is_ejected(now) {
            return false;
        }
        let p = &self.policy;
        let ejected = hosts.iter().filter(|h| h.is_ejected(now)).count() as u64;
        let total = hosts.len().max(1) as u64;
        if ejected > 0 && (ejected + 1) * 100 > u64::from(p.max_ejection_percent) * total {
            return false;
        }
        let s = &ep.state;
        let interval = (p.interval.as_millis() as u64).max(1);
        let base = (p.base_ejection.as_millis() as u64).max(1);
        let max = base.max(MAX_EJECTION_TIME.as_millis() as u64);
        // One off the multiplier for every sweep spent healthy since the last ejection ended.
        let last_end = s.ejected_until.load(Ordering::Acquire);
        let mut n = u64::from(s.backoff.load(Ordering::Acquire));
        if last_end > 0 && now >= last_end {
            n = n.saturating_sub((now - last_end) / interval);
        }
        if base * n < max {
            n += 1;
        }
        let duration = (base * n).min(max);
        // Envoy returns the host at the first sweep on or after the ejection time.
        let until = (now + duration).div_ceil(interval) * interval;
        s.backoff.store(n as u32, Ordering::Release);
        s.consecutive_5xx.store(0, Ordering::Release);
        s.consecutive_gateway.store(0, Ordering::Release);
        s.consecutive_local.store(0, Ordering::Release);
        s.ejections.fetch_add(1, Ordering::Relaxed);
        s.ejected_until.store(until.max(1), Ordering::Release);
        tracing::info!(endpoint = %ep.addr, ejection_ms = until - now, times = n, "outlier detection ejected an endpoint");
        true
    }

    /// Is the cluster in panic mode (too few healthy hosts: ejections are ignored)?
    pub fn panic(&self, healthy: usize, total: usize) -> bool {
        let min = self.policy.min_health_percent as usize;
        min > 0 && healthy * 100 < min * total
    }
}

/// Counts one more; true exactly when the count reaches the threshold (Envoy's `==` check, so a
/// refused ejection is retried only after a success resets the counter).
fn hit(counter: &AtomicU32, threshold: Option<u32>) -> bool {
    let n = counter.fetch_add(1, Ordering::AcqRel).saturating_add(1);
    threshold.is_some_and(|t| n == t)
}

#[cfg(test)]
mod tests;
