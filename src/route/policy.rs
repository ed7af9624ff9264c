//! Per-route resilience policies: retries (`retries`), fault injection (`fault`) and mirrors
//! (`mirror`, `mirrors`). Plain data compiled once; `proxy` applies them.
//! May not touch: endpoints, clocks, bodies.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use super::ClusterId;

/// Envoy's default retry back-off base interval.
pub const BACKOFF_BASE: Duration = Duration::from_millis(25);

/// Which outcomes a route retries (Envoy's `retry_on`), as a set of conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn(u32);

/// A compiled `retries` block (or Istio's default policy when the route has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (`attempts`); 0 = never retry.
    pub num_retries: u32,
    pub on: RetryOn,
    /// Status codes of `retriable-status-codes` (from numeric `retryOn` tokens).
    pub status_codes: Vec<u16>,
    /// `perTryTimeout`; `None` = only the route timeout bounds an attempt.
    pub per_try_timeout: Option<Duration>,
    /// `backoff`: the base interval. Default is 25 ms.
    pub backoff_base: Duration,
    /// Largest back-off: 10 × base.
    pub backoff_max: Duration,
    /// `retryIgnorePreviousHosts` (default true): a retry avoids endpoints already tried.
    pub other_hosts: bool,
}

/// A compiled `fault` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultPolicy {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultDelay {
    pub duration: Duration,
    /// Share of requests delayed, in parts per million (no percentage = 0 = never).
    pub per_million: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultAbort {
    pub kind: AbortKind,
    /// Share of requests aborted, in parts per million (no percentage = 0 = never).
    pub per_million: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortKind {
    /// `httpStatus`: a local reply with this status and body `fault filter abort`.
    Http(StatusCode),
    /// `grpcStatus`: a gRPC trailers-only reply with this code.
    Grpc(u32),
}

/// One mirror destination of a route.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// `None` when the destination names no cluster: the mirror is skipped, as in Envoy.
    pub cluster: Option<ClusterId>,
    /// `outbound|<port>|<subset>|<host>`, for logs.
    pub key: Arc<str>,
    /// Share of requests mirrored, in parts per million. Default is all.
    pub per_million: u32,
}

// === impl RetryOn ===

impl RetryOn {
    pub const FIVE_XX: RetryOn = RetryOn(1);
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    pub const RESET: RetryOn = RetryOn(1 << 2);
    pub const RESET_BEFORE_REQUEST: RetryOn = RetryOn(1 << 3);
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 4);
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 5);
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 6);
    pub const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 7);
    pub const RETRIABLE_HEADERS: RetryOn = RetryOn(1 << 8);
    pub const ENVOY_RATELIMITED: RetryOn = RetryOn(1 << 9);
    pub const HTTP3_POST_CONNECT_FAILURE: RetryOn = RetryOn(1 << 10);
    pub const GRPC_CANCELLED: RetryOn = RetryOn(1 << 11);
    pub const GRPC_DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 12);
    pub const GRPC_INTERNAL: RetryOn = RetryOn(1 << 13);
    pub const GRPC_RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 14);
    pub const GRPC_UNAVAILABLE: RetryOn = RetryOn(1 << 15);

    /// Istio's default `retry_on`: `connect-failure,refused-stream,unavailable,cancelled,
    /// retriable-status-codes` (with no status codes).
    pub const ISTIO_DEFAULT: RetryOn = RetryOn(
        Self::CONNECT_FAILURE.0
            | Self::REFUSED_STREAM.0
            | Self::GRPC_UNAVAILABLE.0
            | Self::GRPC_CANCELLED.0
            | Self::RETRIABLE_STATUS_CODES.0,
    );

    /// Every condition with its `retryOn` token.
    const TOKENS: [(&'static str, RetryOn); 16] = [
        ("5xx", Self::FIVE_XX),
        ("gateway-error", Self::GATEWAY_ERROR),
        ("reset", Self::RESET),
        ("reset-before-request", Self::RESET_BEFORE_REQUEST),
        ("connect-failure", Self::CONNECT_FAILURE),
        ("retriable-4xx", Self::RETRIABLE_4XX),
        ("refused-stream", Self::REFUSED_STREAM),
        ("retriable-status-codes", Self::RETRIABLE_STATUS_CODES),
        ("retriable-headers", Self::RETRIABLE_HEADERS),
        ("envoy-ratelimited", Self::ENVOY_RATELIMITED),
        (
            "http3-post-connect-failure",
            Self::HTTP3_POST_CONNECT_FAILURE,
        ),
        ("cancelled", Self::GRPC_CANCELLED),
        ("deadline-exceeded", Self::GRPC_DEADLINE_EXCEEDED),
        ("internal", Self::GRPC_INTERNAL),
        ("resource-exhausted", Self::GRPC_RESOURCE_EXHAUSTED),
        ("unavailable", Self::GRPC_UNAVAILABLE),
    ];

    /// The condition a `retryOn` token names (numeric tokens are status codes, not conditions).
    pub fn from_token(token: &str) -> Option<RetryOn> {
        Self::TOKENS
            .iter()
            .find(|(t, _)| *t == token)
            .map(|(_, on)| *on)
    }

    /// The `retryOn` tokens of this set, in Envoy's documentation order.
    pub fn tokens(self) -> Vec<&'static str> {
        Self::TOKENS
            .iter()
            .filter(|(_, on)| self.contains(*on))
            .map(|(t, _)| *t)
            .collect()
    }

    pub fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn any(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for RetryOn {
    type Output = RetryOn;
    fn bitor(self, rhs: RetryOn) -> RetryOn {
        RetryOn(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for RetryOn {
    fn bitor_assign(&mut self, rhs: RetryOn) {
        self.0 |= rhs.0;
    }
}

// === impl RetryPolicy ===

impl RetryPolicy {
    /// What a route without `retries` gets (§5.7): 2 retries on connect failure, refused stream
    /// and gRPC unavailable/cancelled; an upstream 503 is not retried.
    pub fn istio_default() -> RetryPolicy {
        RetryPolicy {
            num_retries: 2,
            on: RetryOn::ISTIO_DEFAULT,
            status_codes: Vec::new(),
            per_try_timeout: None,
            backoff_base: BACKOFF_BASE,
            backoff_max: BACKOFF_BASE * 10,
            other_hosts: true,
        }
    }

    /// `attempts: 0`: no retry at all.
    pub fn disabled() -> RetryPolicy {
        RetryPolicy {
            num_retries: 0,
            on: RetryOn::default(),
            ..RetryPolicy::istio_default()
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::istio_default()
    }
}

/// Converts an Istio percentage (`value` in [0, 100]) to parts per million.
pub fn per_million(value: f64) -> u32 {
    (value.clamp(0.0, 100.0) * 10_000.0).round() as u32
}
