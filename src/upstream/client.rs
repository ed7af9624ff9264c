//! The upstream HTTP clients: pooled keep-alive connections, HTTP/1.1 and HTTP/2 (prior knowledge).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Body type of requests sent upstream (the downstream body, streamed).
pub type UpstreamBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Connection pools shared by every cluster; pools are keyed by endpoint `ip:port`.
#[derive(Clone, Debug)]
pub struct Clients {
    pub http1: Client<HttpConnector, UpstreamBody>,
    pub http2: Client<HttpConnector, UpstreamBody>,
}

/// Istio's default upstream connect timeout (MeshConfig `connectTimeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Istio's default upstream idle timeout is 1 h; idle pooled connections are closed sooner here
/// to bound memory, a change no client can observe.
const POOL_IDLE: Duration = Duration::from_secs(90);

impl Clients {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.enforce_http(true);
        let http1 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(1024)
            .build(connector.clone());
        let http2 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .http2_only(true)
            .build(connector);
        Clients { http1, http2 }
    }
}

impl Default for Clients {
    fn default() -> Self {
        Self::new()
    }
}
