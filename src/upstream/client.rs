//! The upstream HTTP clients. Each live cluster owns one client built from its connection
//! settings (connect timeout, TCP keepalive, idle timeout, requests per connection), so its pools
//! are its own, as in Envoy. HTTP/1.1 goes through `h1.rs` (connections owned by the request that
//! uses them); HTTP/2 (prior knowledge) through hyper-util's client.
//! May not touch: endpoint choice, limits (see `pool.rs`).
//!
//! HTTP/2 clusters keep one hyper-util client per endpoint, with a connector pinned to that
//! endpoint. hyper-util pools by the URI's authority and HTTP/2 sends that authority as
//! `:authority`; per-endpoint clients let the request URI carry the client's host (as Envoy sends
//! it) while the connection still goes to the endpoint the balancer chose.
//!
//! HTTP/2 `maxRequestsPerConnection`: every connection carries a use counter (connector `extra`,
//! which hyper-util copies into each response); when a response brings it to the limit, the
//! connection is poisoned, so the pool never hands it out again.
//!
//! TLS origination: both paths connect TCP, then run the cluster's handshake (`transport.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{
    capture_connection, Connected, Connection, HttpConnector,
};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::error::UpstreamError;
use super::h1::{Http1Pool, PooledBody};
use super::outgoing::Outgoing;
use super::settings::{ConnectionSettings, Protocol, UpstreamBody, KEEPALIVE_TIME};
use super::transport::{self, Origination, Stream};

/// One cluster's client.
#[derive(Debug)]
pub struct ClusterClient {
    /// HTTP/1.1 connections (unused by HTTP/2 clusters).
    h1: Http1Pool,
    max_requests_per_connection: u32,
    protocol: Protocol,
    settings: ConnectionSettings,
    /// HTTP/2 only: a client per endpoint (see the module doc). Read without locking; an
    /// endpoint's first request adds its client.
    per_endpoint: arc_swap::ArcSwap<HashMap<SocketAddr, Client<CountingConnector, UpstreamBody>>>,
    tls: Option<Result<Origination, String>>,
}

/// `HttpConnector` whose connections count the requests they carried, optionally pinned to one
/// endpoint.
#[derive(Debug, Clone)]
pub struct CountingConnector {
    inner: HttpConnector,
    pinned: Option<Uri>,
    tls: Option<Result<Origination, String>>,
    /// Bounds the TLS handshake (the TCP connect has its own bound in `inner`).
    handshake_timeout: Duration,
}

/// A TCP connection with its use counter.
#[derive(Debug)]
pub struct CountedConnection {
    io: TokioIo<Stream>,
    uses: ConnectionUses,
}

/// Requests a connection carried (found in every response's extensions).
#[derive(Debug, Clone, Default)]
struct ConnectionUses(Arc<AtomicU32>);

// === impl ClusterClient ===

impl ClusterClient {
    /// A new connection to `endpoint` with the cluster's socket settings (connect timeout, TCP
    /// keepalive) and TLS origination: what a TCP route tunnels over.
    ///
    /// # Errors
    /// `Connect` for the socket (or the timeout), `Tls` for the handshake.
    pub async fn connect_stream(&self, endpoint: SocketAddr) -> Result<Stream, UpstreamError> {
        transport::connect(endpoint, &self.settings, self.tls.as_ref()).await
    }

    /// `tls`: the cluster's TLS origination (`Err`: its config did not load, so every connect
    /// fails with that reason).
    pub fn new(
        protocol: Protocol,
        settings: &ConnectionSettings,
        tls: Option<Result<Origination, String>>,
    ) -> ClusterClient {
        ClusterClient {
            h1: Http1Pool::new(settings, tls.clone()),
            tls,
            max_requests_per_connection: settings.max_requests_per_connection,
            protocol,
            settings: settings.clone(),
            per_endpoint: Default::default(),
        }
    }

    /// The HTTP/2 client that sends to `endpoint` (its own; made by its first request).
    fn client_for(&self, endpoint: SocketAddr) -> Client<CountingConnector, UpstreamBody> {
        loop {
            if let Some(c) = self.per_endpoint.load().get(&endpoint) {
                return c.clone();
            }
            self.per_endpoint.rcu(|map| {
                let mut map = HashMap::clone(map);
                map.entry(endpoint).or_insert_with(|| {
                    let connector =
                        CountingConnector::pinned(&self.settings, endpoint, self.tls.clone());
                    build(connector, self.protocol, &self.settings)
                });
                map
            });
        }
    }

    /// Sends one request to `endpoint` on a pooled (or new) connection; `fresh`: never a
    /// pooled one (HTTP/1.1).
    ///
    /// # Errors
    /// Connect failures and failures before response headers. HTTP/1.1: `Stale` when a reused
    /// connection closed after the request was written (see `h1.rs`).
    pub async fn request(
        &self,
        endpoint: SocketAddr,
        out: &Outgoing<'_>,
        body: UpstreamBody,
        fresh: bool,
    ) -> Result<Response<RespBody>, UpstreamError> {
        if self.protocol != Protocol::Http2 {
            if out.headers.contains_key(http::header::UPGRADE) {
                let req = to_request(out, Version::HTTP_11, body)?;
                // Boxed: rare, and its future would size every request's.
                let resp = Box::pin(self.h1.send_upgrade(endpoint, req)).await?;
                return Ok(resp.map(RespBody::Direct));
            }
            let resp = self.h1.send(endpoint, out, body, fresh).await?;
            return Ok(resp.map(RespBody::Pooled));
        }
        let req = to_request(out, Version::HTTP_2, body)?;
        // Boxed: its future is larger than the HTTP/1.1 path's and would size every request's.
        Box::pin(self.request_h2(endpoint, req))
            .await
            .map(|r| r.map(RespBody::Direct))
            .map_err(|e| UpstreamError::from_legacy(&e))
    }

    /// Idle HTTP/1.1 connections to `endpoint` (for tests and stats).
    pub fn idle_connections(&self, endpoint: SocketAddr) -> usize {
        self.h1.idle(endpoint)
    }

    /// HTTP/2: the URI is re-aimed at the `host` header's authority, which becomes `:authority`.
    async fn request_h2(
        &self,
        endpoint: SocketAddr,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        let limit = self.max_requests_per_connection;
        let captured = (limit > 1).then(|| capture_connection(&mut req));
        aim_at_host(&mut req);
        let client = self.client_for(endpoint);
        let resp = client.request(req).await?;
        if let (Some(captured), Some(uses)) = (captured, resp.extensions().get::<ConnectionUses>())
        {
            if uses.0.fetch_add(1, Ordering::AcqRel) + 1 >= limit {
                if let Some(conn) = captured.connection_metadata().as_ref() {
                    conn.poison();
                }
            }
        }
        Ok(resp)
    }
}

/// An upstream response body: an HTTP/1.1 body that drives (and then returns) its connection,
/// or a body hyper's own connection task feeds.
#[derive(Debug)]
pub enum RespBody {
    Pooled(PooledBody),
    Direct(Incoming),
}

impl http_body::Body for RespBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            RespBody::Pooled(b) => Pin::new(b).poll_frame(cx),
            RespBody::Direct(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Pooled(b) => b.is_end_stream(),
            RespBody::Direct(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            RespBody::Pooled(b) => b.size_hint(),
            RespBody::Direct(b) => b.size_hint(),
        }
    }
}

/// `out` as an `http::Request` (a path that cannot make a URI is a protocol error; not expected).
fn to_request(
    out: &Outgoing<'_>,
    version: Version,
    body: UpstreamBody,
) -> Result<Request<UpstreamBody>, UpstreamError> {
    out.to_request(version, body)
        .map_err(|e| UpstreamError::Protocol(format!("request URI: {e}")))
}

/// Replaces the URI's authority with the `host` header (moved into the URI: HTTP/2 carries it
/// as `:authority`). Left alone when there is no usable host header.
fn aim_at_host(req: &mut Request<UpstreamBody>) {
    let Some(host) = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return;
    };
    let Ok(authority) = http::uri::Authority::try_from(host) else {
        return;
    };
    let mut parts = req.uri().clone().into_parts();
    parts.authority = Some(authority);
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
        req.headers_mut().remove(http::header::HOST);
    }
}

// === impl CountingConnector ===

impl CountingConnector {
    /// Always connects to `endpoint`, whatever the URI says.
    fn pinned(
        settings: &ConnectionSettings,
        endpoint: SocketAddr,
        tls: Option<Result<Origination, String>>,
    ) -> Self {
        let uri = Uri::try_from(format!("http://{endpoint}")).ok();
        CountingConnector {
            inner: connector(settings),
            pinned: uri,
            tls,
            handshake_timeout: settings.connect_timeout,
        }
    }
}

impl tower_service::Service<Uri> for CountingConnector {
    type Response = CountedConnection;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future =
        Pin<Box<dyn Future<Output = Result<CountedConnection, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let target = self.pinned.clone().unwrap_or(uri);
        let connecting = self.inner.call(target);
        let tls = self.tls.clone();
        let timeout = self.handshake_timeout;
        Box::pin(async move {
            let tcp: TcpStream = connecting.await?.into_inner();
            let stream = match tls {
                None => Stream::Plain(tcp),
                Some(Ok(o)) => match tokio::time::timeout(timeout, o.handshake(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(handshake_error(e)),
                    Err(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "TLS handshake timeout",
                        )
                        .into())
                    }
                },
                Some(Err(why)) => {
                    return Err(handshake_error(UpstreamError::Tls {
                        detail: super::error::tls_detail(&why),
                    }))
                }
            };
            Ok(CountedConnection {
                io: TokioIo::new(stream),
                uses: ConnectionUses::default(),
            })
        })
    }
}

// === impl CountedConnection ===

impl Connection for CountedConnection {
    fn connected(&self) -> Connected {
        Connected::new().extra(self.uses.clone())
    }
}

impl hyper::rt::Read for CountedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for CountedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

/// A failed handshake travels through hyper-util's error chain; `UpstreamError::from_legacy`
/// finds it there.
fn handshake_error(e: UpstreamError) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(e)
}

fn connector(s: &ConnectionSettings) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(s.connect_timeout));
    connector.enforce_http(true);
    if let Some(k) = &s.keepalive {
        connector.set_keepalive(Some(k.time.unwrap_or(KEEPALIVE_TIME)));
        connector.set_keepalive_interval(k.interval);
        connector.set_keepalive_retries(k.probes);
    }
    connector
}

fn build<C>(connector: C, protocol: Protocol, s: &ConnectionSettings) -> Client<C, UpstreamBody>
where
    C: hyper_util::client::legacy::connect::Connect + Clone,
{
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(s.idle_timeout);
    if s.max_requests_per_connection == 1 {
        // One request per connection: never keep one idle for reuse.
        builder.pool_max_idle_per_host(0);
    } else {
        builder.pool_max_idle_per_host(1024);
    }
    if protocol == Protocol::Http2 {
        builder.http2_only(true);
    }
    builder.build(connector)
}
