//! Failures a client can see, each with Envoy's status, body and response flags.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::route::AbortKind;

use super::Body;

const RESET_PREFIX: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: ";
const RETRIED_PREFIX: &str =
    "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: ";
pub const X_ENVOY_OVERLOADED: HeaderName = HeaderName::from_static("x-envoy-overloaded");

/// One variant per failure a client can observe.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route")]
    NoRoute,
    #[error("cluster {key} does not exist")]
    NoCluster { key: std::sync::Arc<str> },
    #[error("no healthy upstream in {key}")]
    NoHealthyUpstream { key: std::sync::Arc<str> },
    #[error("connect to {endpoint} failed: {detail}")]
    Connect {
        endpoint: std::net::SocketAddr,
        detail: String,
    },
    #[error("connect to {endpoint} timed out")]
    ConnectTimeout { endpoint: std::net::SocketAddr },
    #[error("upstream {endpoint} closed the connection before response headers")]
    ConnectionTermination { endpoint: std::net::SocketAddr },
    #[error("upstream {endpoint} reset the stream")]
    RemoteReset { endpoint: std::net::SocketAddr },
    #[error("upstream {endpoint} refused the stream")]
    RefusedStream { endpoint: std::net::SocketAddr },
    #[error("upstream {endpoint} protocol error: {detail}")]
    Protocol {
        endpoint: std::net::SocketAddr,
        detail: String,
    },
    /// The route timeout expired (never retried).
    #[error("upstream request timeout after {after:?}")]
    UpstreamTimeout { after: Duration },
    /// One attempt got no response headers within `perTryTimeout`.
    #[error("per-try timeout after {after:?}")]
    PerTryTimeout { after: Duration },
    /// A circuit breaker of the cluster (`connectionPool` limits) refused the request.
    #[error("circuit breaker of {key} refused the request")]
    Overflow { key: std::sync::Arc<str> },
    /// The request was retried (`attempts` > 1) and failed; `last` is the last attempt's failure.
    #[error("{last} (attempt {attempts})")]
    Retried {
        last: Box<ProxyError>,
        attempts: u32,
        /// The last failure was retriable but no attempt was left (`URX`).
        exhausted: bool,
        /// A retry was refused by the `maxRetries` circuit breaker (`UO`).
        retry_overflow: bool,
    },
    /// VirtualService `fault.abort` fired.
    #[error("fault injection abort")]
    FaultAbort { kind: AbortKind },
    #[error("missing Host header")]
    MissingHost,
    #[error("HTTP/1.0 is not accepted")]
    Http10,
    #[error("bad request path")]
    BadPath,
    #[error("request headers larger than 60 KiB")]
    HeadersTooLarge,
    /// `Host`/`:authority` with bytes an authority cannot hold, or several `Host` headers.
    #[error("invalid Host / :authority")]
    InvalidHost,
    /// CONNECT whose target is not in authority-form (`CONNECT /x`, `CONNECT http://h/x`).
    #[error("CONNECT target is not in authority-form")]
    ConnectForm,
    /// CONNECT in authority-form: not enabled (Envoy's reply to an upgrade it may not do).
    #[error("CONNECT is not enabled")]
    ConnectNotAllowed,
    /// A transfer coding other than a single `chunked` (`gzip, chunked`, `chunked, chunked`).
    #[error("unsupported transfer encoding")]
    TransferCoding,
    /// Request framing that two parsers could read differently.
    #[error("ambiguous request framing: {kind}")]
    Framing { kind: FramingError },
    /// The client's request body broke off or was malformed (bad chunk size, missing CRLF):
    /// the client's fault, never the upstream's.
    #[error("the client's request body failed")]
    DownstreamBody,
    /// The overload manager sheds new requests (memory past its threshold).
    #[error("overloaded")]
    Overloaded,
}

/// Why a request's framing is ambiguous (found on the wire by `proxy::framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("both content-length and transfer-encoding")]
    ContentLengthAndTransferEncoding,
    #[error("more than one content-length")]
    DuplicateContentLength,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoCluster { .. }
            | ProxyError::NoHealthyUpstream { .. }
            | ProxyError::Connect { .. }
            | ProxyError::ConnectTimeout { .. }
            | ProxyError::ConnectionTermination { .. }
            | ProxyError::RemoteReset { .. }
            | ProxyError::RefusedStream { .. }
            | ProxyError::Overflow { .. }
            | ProxyError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Protocol { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } | ProxyError::PerTryTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::Retried { last, .. } => last.status(),
            ProxyError::FaultAbort {
                kind: AbortKind::Http(s),
            } => *s,
            // gRPC replies are trailers-only: HTTP 200 with the code in `grpc-status`.
            ProxyError::FaultAbort {
                kind: AbortKind::Grpc(_),
            } => StatusCode::OK,
            ProxyError::MissingHost
            | ProxyError::BadPath
            | ProxyError::InvalidHost
            | ProxyError::ConnectForm
            | ProxyError::Framing { .. }
            | ProxyError::DownstreamBody => StatusCode::BAD_REQUEST,
            ProxyError::ConnectNotAllowed => StatusCode::FORBIDDEN,
            ProxyError::TransferCoding => StatusCode::NOT_IMPLEMENTED,
            ProxyError::Http10 => StatusCode::UPGRADE_REQUIRED,
            ProxyError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    /// Envoy's `%RESPONSE_FLAGS%` for this failure.
    pub fn response_flags(&self) -> ResponseFlags {
        match self {
            ProxyError::NoRoute => ResponseFlags::NR,
            ProxyError::Overloaded => ResponseFlags::OM,
            ProxyError::NoCluster { .. } => ResponseFlags::NC,
            ProxyError::NoHealthyUpstream { .. } => ResponseFlags::UH,
            ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. } => ResponseFlags::UF,
            ProxyError::ConnectionTermination { .. } => ResponseFlags::UC,
            ProxyError::RemoteReset { .. } | ProxyError::RefusedStream { .. } => ResponseFlags::UR,
            ProxyError::Protocol { .. } => ResponseFlags::UPE,
            ProxyError::UpstreamTimeout { .. } | ProxyError::PerTryTimeout { .. } => {
                ResponseFlags::UT
            }
            ProxyError::Overflow { .. } => ResponseFlags::UO,
            ProxyError::Retried {
                last,
                exhausted,
                retry_overflow,
                ..
            } => {
                let mut f = last.response_flags();
                if *exhausted {
                    f |= ResponseFlags::URX;
                }
                if *retry_overflow {
                    f |= ResponseFlags::UO;
                }
                f
            }
            ProxyError::FaultAbort { .. } => ResponseFlags::FI,
            ProxyError::MissingHost
            | ProxyError::Http10
            | ProxyError::BadPath
            | ProxyError::HeadersTooLarge
            | ProxyError::InvalidHost
            | ProxyError::ConnectForm
            | ProxyError::ConnectNotAllowed
            | ProxyError::TransferCoding
            | ProxyError::Framing { .. }
            | ProxyError::DownstreamBody => ResponseFlags::DPE,
        }
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` for this reply.
    pub fn details(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "route_not_found",
            ProxyError::Overloaded => "overload",
            ProxyError::NoCluster { .. } => "cluster_not_found",
            ProxyError::NoHealthyUpstream { .. } => "no_healthy_upstream",
            ProxyError::Connect { .. } => {
                "upstream_reset_before_response_started{connection_failure}"
            }
            ProxyError::ConnectTimeout { .. } => {
                "upstream_reset_before_response_started{connection_timeout}"
            }
            ProxyError::ConnectionTermination { .. } => {
                "upstream_reset_before_response_started{connection_termination}"
            }
            ProxyError::RemoteReset { .. } => {
                "upstream_reset_before_response_started{remote_reset}"
            }
            ProxyError::RefusedStream { .. } => {
                "upstream_reset_before_response_started{remote_refused_stream_reset}"
            }
            ProxyError::Protocol { .. } => "upstream_reset_before_response_started{protocol_error}",
            ProxyError::UpstreamTimeout { .. } => "response_timeout",
            ProxyError::PerTryTimeout { .. } => "upstream_per_try_timeout",
            ProxyError::Overflow { .. } => "upstream_reset_before_response_started{overflow}",
            ProxyError::Retried { last, .. } => last.details(),
            ProxyError::FaultAbort { .. } => "fault_filter_abort",
            ProxyError::MissingHost => "missing_host_header",
            ProxyError::Http10 => "low_version",
            ProxyError::BadPath => "path_normalization_failed",
            ProxyError::HeadersTooLarge => "request_headers_too_large",
            ProxyError::InvalidHost => "invalid_authority",
            ProxyError::ConnectForm | ProxyError::ConnectNotAllowed => "upgrade_failed",
            ProxyError::TransferCoding => "http1.invalid_transfer_encoding",
            ProxyError::Framing { .. } => "http1.content_length_and_chunked_not_allowed",
            ProxyError::DownstreamBody => "downstream_remote_disconnect_or_codec_error",
        }
    }

    /// Was this a circuit-breaker overflow (the reply carries `x-envoy-overloaded: true`)?
    pub fn is_overflow(&self) -> bool {
        match self {
            ProxyError::Overflow { .. } | ProxyError::Overloaded => true,
            ProxyError::Retried { last, .. } => last.is_overflow(),
            ProxyError::NoRoute
            | ProxyError::NoCluster { .. }
            | ProxyError::NoHealthyUpstream { .. }
            | ProxyError::Connect { .. }
            | ProxyError::ConnectTimeout { .. }
            | ProxyError::ConnectionTermination { .. }
            | ProxyError::RemoteReset { .. }
            | ProxyError::RefusedStream { .. }
            | ProxyError::Protocol { .. }
            | ProxyError::UpstreamTimeout { .. }
            | ProxyError::PerTryTimeout { .. }
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
            | ProxyError::DownstreamBody => false,
        }
    }

    /// The body Envoy sends for this failure.
    pub fn body(&self) -> String {
        match self {
            ProxyError::NoRoute
            | ProxyError::NoCluster { .. }
            | ProxyError::MissingHost
            | ProxyError::InvalidHost
            | ProxyError::ConnectNotAllowed => String::new(),
            ProxyError::NoHealthyUpstream { .. } => "no healthy upstream".into(),
            ProxyError::Connect { detail, .. } => {
                format!(
                    "{RESET_PREFIX}remote connection failure, transport failure reason: {detail}"
                )
            }
            ProxyError::ConnectTimeout { .. } => format!("{RESET_PREFIX}connection timeout"),
            ProxyError::ConnectionTermination { .. } => {
                format!("{RESET_PREFIX}connection termination")
            }
            ProxyError::RemoteReset { .. } => format!("{RESET_PREFIX}remote reset"),
            ProxyError::RefusedStream { .. } => {
                format!("{RESET_PREFIX}remote refused stream reset")
            }
            ProxyError::Protocol { .. } => format!("{RESET_PREFIX}protocol error"),
            ProxyError::UpstreamTimeout { .. } | ProxyError::PerTryTimeout { .. } => {
                "upstream request timeout".into()
            }
            ProxyError::Overflow { .. } => format!("{RESET_PREFIX}overflow"),
            ProxyError::Overloaded => "envoy overloaded".into(),
            ProxyError::Retried { last, attempts, .. } => {
                let body = last.body();
                match body.strip_prefix(RESET_PREFIX) {
                    Some(reason) if *attempts > 1 => format!("{RETRIED_PREFIX}{reason}"),
                    _ => body,
                }
            }
            ProxyError::FaultAbort { .. } => "fault filter abort".into(),
            ProxyError::Http10 => "Upgrade Required".into(),
            ProxyError::BadPath
            | ProxyError::ConnectForm
            | ProxyError::Framing { .. }
            | ProxyError::DownstreamBody => "Bad Request".into(),
            ProxyError::TransferCoding => "Not Implemented".into(),
            ProxyError::HeadersTooLarge => "Request Header Fields Too Large".into(),
        }
    }

    /// The reply to a gRPC request, as Envoy gives it: trailers-only, HTTP 200, `grpc-status`
    /// mapped from the HTTP status (a fault's own gRPC code as given), the body as `grpc-message`.
    pub fn into_grpc_response(self) -> Response<Body> {
        let code = match &self {
            ProxyError::FaultAbort {
                kind: AbortKind::Grpc(code),
            } => *code,
            other => grpc_code(other.status()),
        };
        let mut resp = grpc_reply(code, &self.body());
        if self.is_overflow() {
            resp.headers_mut()
                .insert(X_ENVOY_OVERLOADED, HeaderValue::from_static("true"));
        }
        resp.extensions_mut().insert(self.response_flags());
        resp
    }

    /// Codec-level rejections close the connection, as Envoy's HTTP/1 codec errors do: after
    /// them the connection's framing cannot be trusted.
    fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::Http10
                | ProxyError::BadPath
                | ProxyError::HeadersTooLarge
                | ProxyError::ConnectForm
                | ProxyError::ConnectNotAllowed
                | ProxyError::TransferCoding
                | ProxyError::Framing { .. }
                | ProxyError::DownstreamBody
        )
    }

    pub fn into_response(self) -> Response<Body> {
        if let ProxyError::FaultAbort {
            kind: AbortKind::Grpc(code),
        } = self
        {
            return grpc_reply(code, "fault filter abort");
        }
        let mut resp = local_reply(self.status(), Bytes::from(self.body()));
        if self.is_overflow() {
            resp.headers_mut()
                .insert(X_ENVOY_OVERLOADED, HeaderValue::from_static("true"));
        }
        if self.closes_connection() {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp.extensions_mut().insert(self.response_flags());
        resp
    }
}

/// Envoy's response flags of one request (`%RESPONSE_FLAGS%`), kept in the response extensions
/// for logging. Printed comma-separated in Envoy's fixed order, `-` when none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseFlags(u32);

// === impl ResponseFlags ===

impl ResponseFlags {
    pub const UH: ResponseFlags = ResponseFlags(1);
    pub const UT: ResponseFlags = ResponseFlags(1 << 1);
    pub const UR: ResponseFlags = ResponseFlags(1 << 2);
    pub const UF: ResponseFlags = ResponseFlags(1 << 3);
    pub const UC: ResponseFlags = ResponseFlags(1 << 4);
    pub const UO: ResponseFlags = ResponseFlags(1 << 5);
    pub const NR: ResponseFlags = ResponseFlags(1 << 6);
    pub const DI: ResponseFlags = ResponseFlags(1 << 7);
    pub const FI: ResponseFlags = ResponseFlags(1 << 8);
    pub const URX: ResponseFlags = ResponseFlags(1 << 9);
    pub const DPE: ResponseFlags = ResponseFlags(1 << 10);
    pub const UPE: ResponseFlags = ResponseFlags(1 << 11);
    pub const NC: ResponseFlags = ResponseFlags(1 << 12);
    /// The client went away before the response was complete.
    pub const DC: ResponseFlags = ResponseFlags(1 << 13);
    /// The overload manager answered (`envoy overloaded`).
    pub const OM: ResponseFlags = ResponseFlags(1 << 14);

    /// Names in Envoy's order.
    const NAMES: [(ResponseFlags, &'static str); 15] = [
        (Self::UH, "UH"),
        (Self::UT, "UT"),
        (Self::UR, "UR"),
        (Self::UF, "UF"),
        (Self::UC, "UC"),
        (Self::UO, "UO"),
        (Self::NR, "NR"),
        (Self::DI, "DI"),
        (Self::FI, "FI"),
        (Self::DC, "DC"),
        (Self::URX, "URX"),
        (Self::DPE, "DPE"),
        (Self::UPE, "UPE"),
        (Self::NC, "NC"),
        (Self::OM, "OM"),
    ];

    /// The raw bit set (a cache key for metric handles).
    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn contains(self, other: ResponseFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for ResponseFlags {
    type Output = ResponseFlags;
    fn bitor(self, rhs: ResponseFlags) -> ResponseFlags {
        ResponseFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for ResponseFlags {
    fn bitor_assign(&mut self, rhs: ResponseFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// Envoy's HTTP → gRPC status mapping for local replies.
fn grpc_code(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// A gRPC trailers-only reply: HTTP 200, `content-type: application/grpc`, the code in
/// `grpc-status` and `message` percent-encoded in `grpc-message`.
pub fn grpc_reply(code: u32, message: &str) -> Response<Body> {
    let mut resp = local_reply(StatusCode::OK, Bytes::new());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(super::headers::GRPC_STATUS, HeaderValue::from(code));
    let encoded: String = message
        .bytes()
        .map(|b| match b {
            b' '..=b'~' if b != b'%' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&encoded) {
        h.insert("grpc-message", v);
    }
    resp.extensions_mut().insert(ResponseFlags::FI);
    resp
}

/// A response made by meshgate itself: `content-type: text/plain` when there is a body,
/// `content-length` always.
pub fn local_reply(status: StatusCode, body: Bytes) -> Response<Body> {
    let len = body.len();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if len > 0 {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

pub fn full(body: Bytes) -> Body {
    Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect() -> ProxyError {
        ProxyError::Connect {
            endpoint: "127.0.0.1:1".parse().unwrap(),
            detail: "delayed connect error: Connection refused".into(),
        }
    }

    #[test]
    fn retried_failures_read_as_envoy() {
        let e = ProxyError::Retried {
            last: Box::new(connect()),
            attempts: 3,
            exhausted: true,
            retry_overflow: false,
        };
        assert_eq!(e.status(), 503);
        assert_eq!(e.body(), "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused");
        assert_eq!(e.response_flags().to_string(), "UF,URX");
        let e = ProxyError::Retried {
            last: Box::new(ProxyError::PerTryTimeout {
                after: Duration::from_millis(5),
            }),
            attempts: 2,
            exhausted: false,
            retry_overflow: true,
        };
        assert_eq!(
            (e.status().as_u16(), e.body().as_str()),
            (504, "upstream request timeout")
        );
        assert_eq!(e.response_flags().to_string(), "UT,UO");
        // A retry-overflow on the first attempt: not "retried" in the body.
        let e = ProxyError::Retried {
            last: Box::new(connect()),
            attempts: 1,
            exhausted: false,
            retry_overflow: true,
        };
        assert!(e
            .body()
            .contains(". reset reason: remote connection failure"));
    }

    #[test]
    fn overflow_reply() {
        let r = ProxyError::Overflow { key: "k".into() }.into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["x-envoy-overloaded"], "true");
        assert_eq!(
            r.extensions().get::<ResponseFlags>().unwrap().to_string(),
            "UO"
        );
        assert_eq!(ResponseFlags::default().to_string(), "-");
    }
}
