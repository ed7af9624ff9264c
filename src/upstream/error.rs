//! Why sending a request upstream failed, typed where it is known (connect, protocol, reset,
//! termination) so the proxy maps causes to Envoy's flags and details without reading messages.
//! May not touch: retry decisions (the proxy's), endpoint health.

use std::io;

/// A failed upstream exchange, before the response head arrived.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connection could not be made. `timeout`: the connect timeout passed.
    #[error("connect failed: {detail}")]
    Connect {
        timeout: bool,
        kind: Option<io::ErrorKind>,
        detail: String,
    },
    /// A reused keep-alive connection was closed by the upstream after the request was written
    /// and before any response byte: the upstream may or may not have acted on it.
    #[error("reused connection closed before the response")]
    Stale,
    /// The TLS handshake with the upstream failed (or the cluster's TLS config did not load).
    /// `detail` is Envoy's `TLS_error:|…:TLS_error_end` form.
    #[error("TLS handshake failed: {detail}")]
    Tls { detail: String },
    /// The upstream sent something that is not HTTP.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// HTTP/2 `REFUSED_STREAM`: the upstream did not process the request.
    #[error("stream refused")]
    RefusedStream,
    /// HTTP/2 stream reset by the upstream.
    #[error("stream reset")]
    RemoteReset,
    /// The connection ended before a response (closed, reset, or failed mid-request).
    #[error("connection terminated: {0}")]
    Terminated(String),
}

impl UpstreamError {
    /// A connect failure from the socket's error.
    pub fn connect(e: &io::Error) -> UpstreamError {
        UpstreamError::Connect {
            timeout: e.kind() == io::ErrorKind::TimedOut,
            kind: Some(e.kind()),
            detail: e.to_string(),
        }
    }

    /// From a failed TLS handshake (tokio-rustls reports rustls' error inside an `io::Error`).
    pub fn from_handshake(e: &io::Error) -> UpstreamError {
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(tls) => UpstreamError::tls(tls),
            None if e.kind() == io::ErrorKind::UnexpectedEof => UpstreamError::Tls {
                detail: tls_detail("connection closed during the handshake"),
            },
            None => UpstreamError::connect(e),
        }
    }

    /// From rustls' error, named the way BoringSSL names the common ones.
    pub fn tls(e: &rustls::Error) -> UpstreamError {
        let reason = match e {
            rustls::Error::InvalidCertificate(_) | rustls::Error::General(_) => {
                format!("CERTIFICATE_VERIFY_FAILED: {e}")
            }
            rustls::Error::AlertReceived(a) => {
                format!("TLSV1_ALERT_{}: {e}", format!("{a:?}").to_ascii_uppercase())
            }
            _ => e.to_string(),
        };
        UpstreamError::Tls {
            detail: tls_detail(&reason),
        }
    }

    /// The connect timeout passed.
    pub fn connect_timeout() -> UpstreamError {
        UpstreamError::Connect {
            timeout: true,
            kind: Some(io::ErrorKind::TimedOut),
            detail: "connect timeout".into(),
        }
    }

    /// From hyper's error on an established connection.
    pub fn from_hyper(e: &hyper::Error) -> UpstreamError {
        if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
            return UpstreamError::Protocol(e.to_string());
        }
        if let Some(h2) = std::error::Error::source(e).and_then(|s| s.downcast_ref::<h2::Error>()) {
            if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return UpstreamError::RefusedStream;
            }
            if h2.is_reset() {
                return UpstreamError::RemoteReset;
            }
        }
        UpstreamError::Terminated(e.to_string())
    }

    /// From hyper-util's client (HTTP/2 clusters).
    pub fn from_legacy(e: &hyper_util::client::legacy::Error) -> UpstreamError {
        let mut source = std::error::Error::source(e);
        let mut io_err = None;
        let mut hyper_err = None;
        while let Some(s) = source {
            // Our connector's own failures (TLS handshakes) come back as they were.
            if let Some(u) = s.downcast_ref::<UpstreamError>() {
                return u.clone();
            }
            if let Some(io) = s.downcast_ref::<io::Error>() {
                io_err.get_or_insert(io);
            }
            if let Some(h) = s.downcast_ref::<hyper::Error>() {
                hyper_err.get_or_insert(h);
            }
            source = s.source();
        }
        if e.is_connect() {
            return match io_err {
                Some(io) => UpstreamError::connect(io),
                None => UpstreamError::Connect {
                    timeout: false,
                    kind: None,
                    detail: "connection failure".into(),
                },
            };
        }
        match hyper_err {
            Some(h) => UpstreamError::from_hyper(h),
            None => UpstreamError::Terminated(e.to_string()),
        }
    }
}

/// Envoy's transport failure reason for TLS: `TLS_error:|<reason>:TLS_error_end`.
pub fn tls_detail(reason: &str) -> String {
    format!("TLS_error:|{reason}:TLS_error_end")
}
