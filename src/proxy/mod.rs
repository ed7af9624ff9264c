//! The request path: accept connections, route each request, forward it, answer.
//! May not touch: `config::*`, YAML files. Reads the snapshot once per request.

mod body;
mod checks;
mod classify;
mod error;
mod fault;
mod forward;
mod framing;
mod head;
mod headers;
mod listener;
mod mirror;
mod path;
mod retry;
mod service;
mod timer;

use arc_swap::ArcSwap;
use http::HeaderValue;

use crate::snapshot::Snapshot;

pub use checks::{authority as request_authority, authority_is_valid, check_head};
pub use error::{FramingError, ProxyError, ResponseFlags};
pub use framing::{Framing, Scanner};
pub use head::Head;
pub use headers::prepare_request;
pub use listener::serve;
pub use path::normalize as normalize_path;
pub use service::redirect as redirect_response;
pub(crate) use service::{headers_too_large, https_location, redirect_location};

/// State shared by every connection: the current snapshot (each cluster in it owns its client).
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    /// Value of the `server` header on every response. Default is `istio-envoy`.
    pub server_header: Option<HeaderValue>,
    /// For `%HOSTNAME%` in header templates.
    pub hostname: String,
}

/// Body of every response meshgate sends.
pub type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
