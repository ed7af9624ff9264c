//! Every attempt's outcome, classified once: retries (`RetryPolicy`), outlier detection and logs
//! all read the same `Class`. Also maps hyper-util client errors to Envoy's failure kinds.
//! May not touch: policies (they interpret the class, this only names what happened).

use std::error::Error as _;
use std::net::SocketAddr;

use http::{HeaderMap, StatusCode};

use crate::upstream::Class;

use super::error::ProxyError;

/// What one attempt produced: response headers, or a failure before them.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    Response(StatusCode, &'a HeaderMap),
    Failed(&'a ProxyError),
}

/// The one classification of an attempt's outcome.
pub fn classify(outcome: Outcome<'_>) -> Class {
    match outcome {
        Outcome::Response(status, headers) => Class::Response {
            status: status.as_u16(),
            grpc: headers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
            ratelimited: headers.contains_key("x-envoy-ratelimited"),
        },
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
            | ProxyError::Unsupported { .. }
            | ProxyError::MissingHost
            | ProxyError::Http10
            | ProxyError::BadPath
            | ProxyError::HeadersTooLarge
            | ProxyError::InvalidHost
            | ProxyError::ConnectForm
            | ProxyError::ConnectNotAllowed
            | ProxyError::TransferCoding
            | ProxyError::Framing { .. }
            | ProxyError::DownstreamBody => Class::Local,
        },
    }
}

/// Maps a client error to Envoy's failure kinds.
pub fn upstream_error(e: &hyper_util::client::legacy::Error, addr: SocketAddr) -> ProxyError {
    let mut source = e.source();
    let mut io_kind = None;
    let mut hyper_err = None;
    let mut detail = String::new();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
            if detail.is_empty() {
                detail = io.to_string();
            }
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            hyper_err.get_or_insert(h);
        }
        source = s.source();
    }
    if e.is_connect() {
        if io_kind == Some(std::io::ErrorKind::TimedOut)
            || detail.contains("timed out")
            || detail.contains("deadline")
        {
            return ProxyError::ConnectTimeout { endpoint: addr };
        }
        let detail = match io_kind {
            Some(std::io::ErrorKind::ConnectionRefused) => {
                "delayed connect error: Connection refused".to_owned()
            }
            _ if detail.is_empty() => "connection failure".to_owned(),
            _ => format!("delayed connect error: {detail}"),
        };
        return ProxyError::Connect {
            endpoint: addr,
            detail,
        };
    }
    if let Some(h) = hyper_err {
        if h.is_parse() || h.is_parse_status() {
            return ProxyError::Protocol {
                endpoint: addr,
                detail: h.to_string(),
            };
        }
        if let Some(h2) = h.source().and_then(|s| s.downcast_ref::<h2::Error>()) {
            if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return ProxyError::RefusedStream { endpoint: addr };
            }
            if h2.is_reset() {
                return ProxyError::RemoteReset { endpoint: addr };
            }
        }
    }
    ProxyError::ConnectionTermination { endpoint: addr }
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
