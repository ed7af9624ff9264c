//! Retry decisions for one request (Envoy's `RetryState`): which classified outcomes the route's
//! `RetryPolicy` retries, how many attempts remain, the jittered exponential back-off, and which
//! endpoints were already tried. May not touch: sockets, clocks (the caller sleeps).

use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;

use crate::route::{RetryOn, RetryPolicy};
use crate::upstream::Class;

/// Per-request retry state.
#[derive(Debug)]
pub struct RetryState<'p> {
    policy: &'p RetryPolicy,
    /// Retries scheduled so far.
    retries: u32,
    /// Endpoints earlier attempts used.
    tried: Vec<SocketAddr>,
}

// === impl RetryState ===

impl<'p> RetryState<'p> {
    pub fn new(policy: &'p RetryPolicy) -> Self {
        RetryState {
            policy,
            retries: 0,
            tried: Vec::new(),
        }
    }

    /// First attempt plus the retries.
    pub fn max_attempts(&self) -> u32 {
        self.policy.num_retries.saturating_add(1)
    }

    /// Does the policy retry this outcome?
    pub fn retriable(&self, class: &Class) -> bool {
        retry_on(self.policy, class)
    }

    /// Remembers the endpoint an attempt used.
    pub fn tried(&mut self, addr: SocketAddr) {
        if !self.tried.contains(&addr) {
            self.tried.push(addr);
        }
    }

    /// Endpoints a retry should avoid (empty when `retryIgnorePreviousHosts: false`).
    pub fn exclude(&self) -> &[SocketAddr] {
        if self.policy.other_hosts {
            &self.tried
        } else {
            &[]
        }
    }

    /// The back-off before the next retry: Envoy's jittered exponential back-off, uniform in
    /// `[0, (2^n − 1) × base)` for retry n, capped at the policy's maximum.
    pub fn next_backoff(&mut self) -> Duration {
        self.retries += 1;
        backoff(self.policy, self.retries, &mut rand::thread_rng())
    }
}

/// Back-off before retry `n` (1-based).
fn backoff(policy: &RetryPolicy, n: u32, rng: &mut impl Rng) -> Duration {
    let base = (policy.backoff_base.as_millis() as u64).max(1);
    let max = (policy.backoff_max.as_millis() as u64).max(base);
    let ceiling = ((1u64 << n.min(32)) - 1).saturating_mul(base).max(1);
    Duration::from_millis(rng.gen_range(0..ceiling).min(max))
}

/// Envoy's `retry_on` matching (§5.7).
pub fn retry_on(policy: &RetryPolicy, class: &Class) -> bool {
    let on = policy.on;
    let no_response = RetryOn::FIVE_XX | RetryOn::GATEWAY_ERROR | RetryOn::RESET;
    match *class {
        Class::Response {
            status,
            grpc,
            ratelimited,
        } => {
            (on.contains(RetryOn::FIVE_XX) && status >= 500)
                || (on.contains(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504))
                || (on.contains(RetryOn::RETRIABLE_4XX) && status == 409)
                || (on.contains(RetryOn::RETRIABLE_STATUS_CODES)
                    && policy.status_codes.contains(&status))
                || (on.contains(RetryOn::ENVOY_RATELIMITED) && ratelimited)
                || grpc.is_some_and(|code| {
                    let cond = match code {
                        1 => RetryOn::GRPC_CANCELLED,
                        4 => RetryOn::GRPC_DEADLINE_EXCEEDED,
                        8 => RetryOn::GRPC_RESOURCE_EXHAUSTED,
                        13 => RetryOn::GRPC_INTERNAL,
                        14 => RetryOn::GRPC_UNAVAILABLE,
                        _ => return false,
                    };
                    on.contains(cond)
                })
        }
        // The request never left: every reset-like condition covers it.
        Class::ConnectFailure => {
            on.any(no_response | RetryOn::CONNECT_FAILURE | RetryOn::RESET_BEFORE_REQUEST)
        }
        Class::Reset { refused_stream } => {
            on.any(no_response) || (refused_stream && on.contains(RetryOn::REFUSED_STREAM))
        }
        // A per-try timeout is retried only under 5xx, gateway-error or reset.
        Class::Timeout => on.any(no_response),
        // Overflow is never retried; local failures are not the upstream's.
        Class::Overflow | Class::Local => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn policy(tokens: &str, codes: &[u16]) -> RetryPolicy {
        let mut on = RetryOn::default();
        for t in tokens.split(',').filter(|t| !t.is_empty()) {
            on |= RetryOn::from_token(t).unwrap();
        }
        RetryPolicy {
            num_retries: 2,
            on,
            status_codes: codes.to_vec(),
            ..RetryPolicy::istio_default()
        }
    }

    fn status(s: u16) -> Class {
        Class::Response {
            status: s,
            grpc: None,
            ratelimited: false,
        }
    }

    const RESET: Class = Class::Reset {
        refused_stream: false,
    };
    const REFUSED: Class = Class::Reset {
        refused_stream: true,
    };

    #[test]
    fn conditions_match_as_envoy() {
        // (retryOn, outcome, retried?)
        let cases: &[(&str, Class, bool)] = &[
            ("5xx", status(500), true),
            ("5xx", status(503), true),
            ("5xx", status(404), false),
            ("5xx", Class::ConnectFailure, true),
            ("5xx", RESET, true),
            ("5xx", Class::Timeout, true),
            ("gateway-error", status(500), false),
            ("gateway-error", status(502), true),
            ("gateway-error", status(504), true),
            ("gateway-error", Class::Timeout, true),
            ("reset", status(503), false),
            ("reset", RESET, true),
            ("reset", Class::ConnectFailure, true),
            ("reset", Class::Timeout, true),
            ("connect-failure", Class::ConnectFailure, true),
            ("connect-failure", RESET, false),
            ("connect-failure", Class::Timeout, false),
            ("connect-failure", status(503), false),
            ("reset-before-request", Class::ConnectFailure, true),
            ("reset-before-request", RESET, false),
            ("retriable-4xx", status(409), true),
            ("retriable-4xx", status(404), false),
            ("refused-stream", REFUSED, true),
            ("refused-stream", RESET, false),
            (
                "unavailable",
                Class::Response {
                    status: 200,
                    grpc: Some(14),
                    ratelimited: false,
                },
                true,
            ),
            (
                "unavailable",
                Class::Response {
                    status: 200,
                    grpc: Some(13),
                    ratelimited: false,
                },
                false,
            ),
            (
                "internal",
                Class::Response {
                    status: 200,
                    grpc: Some(13),
                    ratelimited: false,
                },
                true,
            ),
            (
                "cancelled",
                Class::Response {
                    status: 200,
                    grpc: Some(1),
                    ratelimited: false,
                },
                true,
            ),
            (
                "deadline-exceeded",
                Class::Response {
                    status: 200,
                    grpc: Some(4),
                    ratelimited: false,
                },
                true,
            ),
            (
                "resource-exhausted",
                Class::Response {
                    status: 200,
                    grpc: Some(8),
                    ratelimited: false,
                },
                true,
            ),
            (
                "envoy-ratelimited",
                Class::Response {
                    status: 429,
                    grpc: None,
                    ratelimited: true,
                },
                true,
            ),
            ("5xx,gateway-error,reset", Class::Overflow, false),
            ("5xx", Class::Local, false),
        ];
        for (tokens, class, want) in cases {
            assert_eq!(
                retry_on(&policy(tokens, &[]), class),
                *want,
                "{tokens} on {class:?}"
            );
        }
        let codes = policy("retriable-status-codes", &[418]);
        assert!(retry_on(&codes, &status(418)));
        assert!(!retry_on(&codes, &status(503)));
    }

    #[test]
    fn istio_default_does_not_retry_503() {
        let p = RetryPolicy::istio_default();
        assert!(!retry_on(&p, &status(503)));
        assert!(retry_on(&p, &Class::ConnectFailure));
        assert!(retry_on(&p, &REFUSED));
        assert!(!retry_on(&p, &RESET));
        assert!(!retry_on(&p, &Class::Timeout));
        assert!(retry_on(
            &p,
            &Class::Response {
                status: 200,
                grpc: Some(14),
                ratelimited: false
            }
        ));
        assert_eq!(RetryState::new(&p).max_attempts(), 3);
    }

    #[test]
    fn backoff_is_jittered_exponential_and_capped() {
        let p = RetryPolicy::istio_default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (n, ceiling) in [(1, 25), (2, 75), (3, 175), (4, 250), (10, 250)] {
            let samples: Vec<u64> = (0..2000)
                .map(|_| backoff(&p, n, &mut rng).as_millis() as u64)
                .collect();
            let max = *samples.iter().max().unwrap();
            assert!(max <= ceiling, "retry {n}: {max} ms");
            // Uniform below the ceiling: the largest of 2000 draws is close to it.
            assert!(max + 10 >= ceiling.min(250) - 1, "retry {n}: max {max} ms");
        }
    }

    #[test]
    fn previous_hosts_are_avoided_unless_disabled() {
        let mut p = RetryPolicy::istio_default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut s = RetryState::new(&p);
        s.tried(addr);
        s.tried(addr);
        assert_eq!(s.exclude(), &[addr]);
        p.other_hosts = false;
        let mut s = RetryState::new(&p);
        s.tried(addr);
        assert!(s.exclude().is_empty());
    }
}
