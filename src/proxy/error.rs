//! Failures a client can see, each with Envoy's status, body and response flag.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::Body;

const RESET_PREFIX: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: ";

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
    #[error("upstream {endpoint} protocol error: {detail}")]
    Protocol {
        endpoint: std::net::SocketAddr,
        detail: String,
    },
    #[error("upstream request timeout after {after:?}")]
    UpstreamTimeout { after: Duration },
    #[error("{what} is not supported yet")]
    Unsupported { what: String },
    #[error("missing Host header")]
    MissingHost,
    #[error("HTTP/1.0 is not accepted")]
    Http10,
    #[error("bad request path")]
    BadPath,
    #[error("request headers larger than 60 KiB")]
    HeadersTooLarge,
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
            | ProxyError::Unsupported { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Protocol { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::MissingHost | ProxyError::BadPath => StatusCode::BAD_REQUEST,
            ProxyError::Http10 => StatusCode::UPGRADE_REQUIRED,
            ProxyError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    /// Envoy's `%RESPONSE_FLAGS%` value for this failure.
    pub fn response_flag(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "NR",
            ProxyError::NoCluster { .. } => "NC",
            ProxyError::NoHealthyUpstream { .. } => "UH",
            ProxyError::Connect { .. }
            | ProxyError::ConnectTimeout { .. }
            | ProxyError::Unsupported { .. } => "UF",
            ProxyError::ConnectionTermination { .. } => "UC",
            ProxyError::RemoteReset { .. } => "UR",
            ProxyError::Protocol { .. } => "UPE",
            ProxyError::UpstreamTimeout { .. } => "UT",
            ProxyError::MissingHost
            | ProxyError::Http10
            | ProxyError::BadPath
            | ProxyError::HeadersTooLarge => "DPE",
        }
    }

    /// The body Envoy sends for this failure.
    pub fn body(&self) -> String {
        match self {
            ProxyError::NoRoute | ProxyError::NoCluster { .. } | ProxyError::MissingHost => {
                String::new()
            }
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
            ProxyError::Protocol { .. } => format!("{RESET_PREFIX}protocol error"),
            ProxyError::UpstreamTimeout { .. } => "upstream request timeout".into(),
            ProxyError::Unsupported { what } => {
                format!("{RESET_PREFIX}connection failure, transport failure reason: {what} is not supported by meshgate yet")
            }
            ProxyError::Http10 => "Upgrade Required".into(),
            ProxyError::BadPath => "Bad Request".into(),
            ProxyError::HeadersTooLarge => "Request Header Fields Too Large".into(),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut resp = local_reply(self.status(), Bytes::from(self.body()));
        if matches!(
            self,
            ProxyError::Http10 | ProxyError::BadPath | ProxyError::HeadersTooLarge
        ) {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp.extensions_mut()
            .insert(ResponseFlag(self.response_flag()));
        resp
    }
}

/// The response flag of a local reply, kept in the response extensions for logging.
#[derive(Debug, Clone, Copy)]
pub struct ResponseFlag(pub &'static str);

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
