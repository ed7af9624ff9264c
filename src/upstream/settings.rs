//! What a cluster's connections are made with, shared by the client, its HTTP/1.1 pool and the
//! transport under them: the upstream protocol, the socket and pool settings a DestinationRule's
//! `connectionPool` compiles to, and the body type requests are sent with.
//! May not touch: sockets, pools (this is plain data).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

/// The protocol a cluster speaks upstream (the ServiceEntry port's, or `h2UpgradePolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Body type of requests sent upstream (the downstream body, streamed).
pub type UpstreamBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Istio's default upstream connect timeout (MeshConfig `connectTimeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Istio's default upstream idle timeout is 1 h; idle pooled connections are closed sooner here
/// to bound memory, a change no client can observe.
pub const POOL_IDLE: Duration = Duration::from_secs(90);
/// Linux's default `tcp_keepalive_time`, used when `tcpKeepalive` is set without `time`.
pub(super) const KEEPALIVE_TIME: Duration = Duration::from_secs(7200);

/// Connection settings of a cluster (DestinationRule `connectionPool`, compiled).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectionSettings {
    /// `tcp.connectTimeout`. Default is 10 s.
    pub connect_timeout: Duration,
    /// `tcp.tcpKeepalive`; `None` = SO_KEEPALIVE off. Default is off.
    pub keepalive: Option<Keepalive>,
    /// `http.idleTimeout` (else `tcp.idleTimeout`). Default is 90 s here (Istio: 1 h).
    pub idle_timeout: Duration,
    /// `http.maxRequestsPerConnection`; 0 = unlimited, 1 disables keep-alive. Default is 0.
    pub max_requests_per_connection: u32,
}

/// `tcp.tcpKeepalive`: unset fields keep the OS defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Keepalive {
    pub time: Option<Duration>,
    pub interval: Option<Duration>,
    pub probes: Option<u32>,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            connect_timeout: CONNECT_TIMEOUT,
            keepalive: None,
            idle_timeout: POOL_IDLE,
            max_requests_per_connection: 0,
        }
    }
}
