//! The request path: accept connections, route each request, forward it, answer.
//! May not touch: `config::*`, YAML files. Reads the snapshot once per request.

mod body;
mod checks;
mod classify;
mod conn_service;
mod conn_state;
mod connection;
mod context;
mod error;
mod fault;
mod forward;
mod framing;
mod gate;
mod h1_server;
mod head;
mod headers;
mod http_conn;
mod listener;
mod mirror;
mod overload;
mod path;
mod request_body;
mod retry;
mod service;
mod tcp;
mod timer;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use tokio::sync::{watch, Notify};

use crate::snapshot::Snapshot;
use crate::telemetry::{AccessLog, Destination, IstioMetrics, Tracer};

pub use checks::{authority as request_authority, authority_is_valid, check_head};
pub use error::{FramingError, ProxyError, ResponseFlags};
pub use framing::{Framing, Scanner};
pub use head::{Head, HeadInput};
pub use headers::{prepare_request, Added};
pub use listener::{serve, Limits};
pub use overload::{
    memory_pressure, parse_bytes, start as overload_start, Level as OverloadLevel, Overload,
    OverloadLimits,
};
pub use path::normalize as normalize_path;
pub use service::redirect as redirect_response;
pub(crate) use service::{headers_too_large, https_location, redirect_location};
pub use tcp::TCP_IDLE_TIMEOUT;

/// State shared by every connection: the current snapshot (each cluster in it owns its client),
/// what the finish phase records into, and the drain switch.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    /// Value of the `server` header on every response. Default is `istio-envoy`.
    pub server_header: Option<HeaderValue>,
    /// For `%HOSTNAME%` in header templates.
    pub hostname: String,
    pub istio: IstioMetrics,
    /// `None`: access log off.
    pub access_log: Option<AccessLog>,
    /// Trace context decisions and span export.
    pub tracer: Tracer,
    /// The overload manager's current level (memory thresholds in `Limits::overload`).
    pub overload: Arc<Overload>,
    /// Destination labels of requests that reached no cluster.
    pub unknown_destination: Arc<Destination>,
    draining: AtomicBool,
    drain_signal: watch::Sender<bool>,
    /// Open downstream connections, and a wake-up when the count reaches zero.
    connections: AtomicUsize,
    all_closed: Notify,
}

/// Counts one open downstream connection until dropped.
pub struct ConnectionGuard(Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}

impl Shared {
    pub fn new(
        snapshot: Snapshot,
        server_header: Option<HeaderValue>,
        istio: IstioMetrics,
        access_log: Option<AccessLog>,
        tracer: Tracer,
    ) -> Shared {
        Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            server_header,
            hostname: std::env::var("HOSTNAME").unwrap_or_else(|_| "meshgate".into()),
            istio,
            access_log,
            tracer,
            overload: Arc::default(),
            unknown_destination: Arc::new(Destination::unknown()),
            draining: AtomicBool::new(false),
            drain_signal: watch::Sender::new(false),
            connections: AtomicUsize::new(0),
            all_closed: Notify::new(),
        }
    }

    /// Counts a downstream connection as open until the guard drops.
    pub fn track_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(self.clone())
    }

    /// Open downstream connections now.
    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Resolves once no downstream connection is open.
    pub async fn connections_closed(&self) {
        loop {
            let notified = self.all_closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open_connections() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Starts draining: every response from now on carries `connection: close`, open HTTP/2
    /// connections get a GOAWAY and idle HTTP/1 ones close.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.drain_signal.send_replace(true);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Wakes when draining starts.
    pub fn drain_watch(&self) -> watch::Receiver<bool> {
        self.drain_signal.subscribe()
    }
}

/// Body of every response meshgate sends.
pub type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
