//! Every attempt's outcome, classified once: retries (`RetryPolicy`), outlier detection and logs
//! all read the same `Class`. Also maps hyper-util client errors to Envoy's failure kinds.
//! May not touch: policies (they interpret the class, this only names what happened).

use std::net::SocketAddr;

use http::{HeaderMap, StatusCode};

use crate::upstream::{Class, UpstreamError};

use super::error::ProxyError;

/// What one attempt produced: response headers, or a failure before them.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    Response(StatusCode, &'a HeaderMap),
    Failed(&'a ProxyError),
}

// A constant name: a `&str` lookup parses the name first, on every response.
const X_ENVOY_RATELIMITED: http::HeaderName = http::HeaderName::from_static("x-envoy-ratelimited");

/// The one classification of an attempt's outcome.
pub fn classify(outcome: Outcome<'_>) -> Class {
    match outcome {
        Outcome::Response(status, headers) => {
            // One pass over the names (a handful) instead of two hashed lookups.
            let (mut grpc, mut ratelimited) = (None, false);
            for (name, value) in headers {
                if name == super::headers::GRPC_STATUS {
                    // The first value, as `get` reads it.
                    grpc = grpc.or(Some(value));
                } else if name == X_ENVOY_RATELIMITED {
                    ratelimited = true;
                }
            }
            Class::Response {
                status: status.as_u16(),
                grpc: grpc
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok()),
                ratelimited,
            }
        }
        Outcome::Failed(e) => match e {
            ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. } => Class::ConnectFailure,
            ProxyError::ConnectionTermination { .. }
            | ProxyError::RemoteReset { .. }
            | ProxyError::Protocol { .. } => Class::Reset {
                refused_stream: false,
            },
            ProxyError::RefusedStream { .. } => Class::Reset {
                refused_stream: true,
            },
            ProxyError::UpstreamTimeout { .. } | ProxyError::PerTryTimeout { .. } => Class::Timeout,
            ProxyError::Overflow { .. } => Class::Overflow,
            ProxyError::Retried { last, .. } => classify(Outcome::Failed(last)),
            ProxyError::NoRoute
            | ProxyError::NoCluster { .. }
            | ProxyError::NoHealthyUpstream { .. }
            | ProxyError::FaultAbort { .. }
            | ProxyError::MissingHost
            | ProxyError::Http10
            | ProxyError::BadPath
            | ProxyError::HeadersTooLarge
            | ProxyError::InvalidHost
            | ProxyError::ConnectForm
            | ProxyError::ConnectNotAllowed
            | ProxyError::TransferCoding
            | ProxyError::Framing { .. }
            | ProxyError::Overloaded
            | ProxyError::DownstreamBody => Class::Local,
        },
    }
}

/// Maps an upstream failure to Envoy's failure kinds and details.
pub fn upstream_error(e: &UpstreamError, addr: SocketAddr) -> ProxyError {
    match e {
        UpstreamError::Connect { timeout: true, .. } => {
            ProxyError::ConnectTimeout { endpoint: addr }
        }
        UpstreamError::Connect { kind, detail, .. } => ProxyError::Connect {
            endpoint: addr,
            detail: match kind {
                Some(std::io::ErrorKind::ConnectionRefused) => {
                    "delayed connect error: Connection refused".to_owned()
                }
                _ if detail.is_empty() => "connection failure".to_owned(),
                _ => format!("delayed connect error: {detail}"),
            },
        },
        UpstreamError::Tls { detail } => ProxyError::Connect {
            endpoint: addr,
            detail: detail.clone(),
        },
        UpstreamError::Protocol(detail) => ProxyError::Protocol {
            endpoint: addr,
            detail: detail.clone(),
        },
        UpstreamError::RefusedStream => ProxyError::RefusedStream { endpoint: addr },
        UpstreamError::RemoteReset => ProxyError::RemoteReset { endpoint: addr },
        UpstreamError::Stale | UpstreamError::Terminated(_) => {
            ProxyError::ConnectionTermination { endpoint: addr }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_carry_status_grpc_and_ratelimit() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", "14".parse().unwrap());
        h.insert("x-envoy-ratelimited", "true".parse().unwrap());
        assert_eq!(
            classify(Outcome::Response(StatusCode::OK, &h)),
            Class::Response {
                status: 200,
                grpc: Some(14),
                ratelimited: true
            }
        );
    }

    #[test]
    fn failures_by_kind() {
        let ep: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let connect = ProxyError::Connect {
            endpoint: ep,
            detail: String::new(),
        };
        assert_eq!(classify(Outcome::Failed(&connect)), Class::ConnectFailure);
        let refused = ProxyError::RefusedStream { endpoint: ep };
        assert_eq!(
            classify(Outcome::Failed(&refused)),
            Class::Reset {
                refused_stream: true
            }
        );
        let retried = ProxyError::Retried {
            last: Box::new(ProxyError::Overflow { key: "k".into() }),
            attempts: 2,
            exhausted: false,
            retry_overflow: false,
        };
        assert_eq!(classify(Outcome::Failed(&retried)), Class::Overflow);
        assert_eq!(
            classify(Outcome::Failed(&ProxyError::NoRoute)),
            Class::Local
        );
    }
}
