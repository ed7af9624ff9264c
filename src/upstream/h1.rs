//! HTTP/1.1 upstream connections of one cluster, pooled per endpoint while idle.
//!
//! A connection is owned by the request using it: the request's own task drives it (while the
//! request is written and the response head awaited, then from the response body), so there is
//! no connection task and no channel hop per request. The protocol is meshgate's own
//! (`h1/encode.rs` writes the request, `h1/decode.rs` reads the response, `h1/conn.rs` drives an
//! exchange); hyper's client is kept only for upgrades (WebSocket), whose connection leaves the
//! pool. When the response body ends on a connection that can carry another request, the
//! connection goes back to its endpoint's idle list, holding its socket and no buffer; an idle
//! connection is checked before reuse (the upstream may have closed it).
//!
//! The keep-alive race: a reused connection the upstream closes just as a request is written.
//! If the request never left, it is sent again on a fresh connection here, whatever its method;
//! if it was written and no response byte came back, the caller gets `UpstreamError::Stale` and
//! decides (the proxy resends idempotent requests once, on a fresh connection).
//!
//! `maxRequestsPerConnection` and the idle timeout are enforced at check-in and checkout;
//! a reaper closes connections idle past the timeout or closed by the upstream, and trims idle
//! connections the traffic no longer needs (`to_close`).
//! May not touch: endpoint choice, circuit breakers (`pool.rs`).

mod conn;
mod decode;
mod encode;
mod spare;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use self::conn::{Conn, Exchange, Failed};
use super::error::UpstreamError;
use super::outgoing::Outgoing;
use super::settings::{ConnectionSettings, UpstreamBody};
use super::transport::{self, Origination, Stream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Idle connections by endpoint, looked up twice per request (foldhash, not SipHash).
type IdleMap = HashMap<SocketAddr, Vec<Idle>, foldhash::fast::RandomState>;

/// How often the reaper runs (at most): closes what expired, and trims the surplus.
const TRIM_EVERY: Duration = Duration::from_secs(10);
/// Idle connections per endpoint the trimming keeps (the idle timeout still closes them).
const TRIM_KEEPS: usize = 4;

/// How often idle connections are checked for having been closed by the upstream.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Idle connections kept per endpoint; past it the oldest is closed.
const MAX_IDLE_PER_ENDPOINT: usize = 1024;

/// The HTTP/1.1 connections of one cluster.
#[derive(Debug)]
pub struct Http1Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: ConnectionSettings,
    /// TLS origination (`Err`: the cluster's TLS config did not load; every connect fails).
    tls: Option<Result<Origination, String>>,
    idle: Mutex<IdleMap>,
    /// A reaper task runs (`reap`): from the first idle connection until none is left. Set and
    /// cleared with `idle` locked. A pool with nothing idle costs no task and no timer: a
    /// gateway with 2,000 clusters had 2,000 reapers waking every 2 s.
    reaping: AtomicBool,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// The response body of an HTTP/1.1 exchange: reads it off the connection (sending the rest of
/// the request body meanwhile) and returns the connection to the pool when the body has ended.
pub struct PooledBody {
    exchange: Option<Exchange>,
    /// Where the connection goes back.
    home: Option<(Weak<Inner>, SocketAddr)>,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("open", &self.exchange.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idle")
            .field("uses", &self.conn.uses)
            .field("since", &self.since)
            .finish()
    }
}

// === impl Http1Pool ===

impl Http1Pool {
    pub fn new(
        settings: &ConnectionSettings,
        tls: Option<Result<Origination, String>>,
    ) -> Http1Pool {
        let inner = Arc::new(Inner {
            settings: settings.clone(),
            tls,
            idle: Mutex::default(),
            reaping: AtomicBool::new(false),
        });
        Http1Pool { inner }
    }

    /// Idle connections to `endpoint` right now (for tests and stats).
    pub fn idle(&self, endpoint: SocketAddr) -> usize {
        self.inner.lock().get(&endpoint).map_or(0, Vec::len)
    }

    /// Sends `out` with `body` to `endpoint` on an idle connection, or a new one (always a new
    /// one when `fresh`).
    ///
    /// # Errors
    /// `UpstreamError::Stale` when a reused connection closed after the request was written and
    /// before any response byte; other failures as they happened.
    pub async fn send(
        &self,
        endpoint: SocketAddr,
        out: &Outgoing<'_>,
        body: UpstreamBody,
        fresh: bool,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        let mut idle = if fresh { None } else { self.checkout(endpoint) };
        let mut body = body;
        // One `exchange` call site (its future is most of this one's state), reached at most
        // twice: a reused connection that turns out closed before the request left is replaced
        // by a new one.
        loop {
            let (conn, reused) = match idle.take() {
                Some(conn) => (conn, true),
                None => (self.connect(endpoint).await?, false),
            };
            match conn::exchange(conn, out, body).await {
                Ok(done) => return Ok(self.wrap(endpoint, done)),
                // Never sent: the connection was gone before the request left. Send it anew.
                Err(Failed::Unsent(unsent)) if reused => body = unsent,
                Err(Failed::Unsent(_)) => {
                    return Err(UpstreamError::Terminated(
                        "connection closed before the request was sent".into(),
                    ))
                }
                Err(Failed::Closed(_)) if reused => return Err(UpstreamError::Stale),
                Err(Failed::Closed(detail)) => return Err(UpstreamError::Terminated(detail)),
                Err(Failed::Error(e)) => return Err(e),
            }
        }
    }

    /// Sends a request that may upgrade the connection (WebSocket): on a new connection driven
    /// by its own task, never pooled.
    ///
    /// # Errors
    /// As `send`.
    pub async fn send_upgrade(
        &self,
        endpoint: SocketAddr,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let stream = self.inner.open(endpoint).await?;
        let (mut send, driver) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamError::from_hyper(&e))?;
        tokio::spawn(async move {
            if let Err(e) = driver.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        send.send_request(req)
            .await
            .map_err(|e| UpstreamError::from_hyper(&e))
    }

    fn wrap(
        &self,
        endpoint: SocketAddr,
        (resp, exchange): (Response<()>, Exchange),
    ) -> Response<PooledBody> {
        let body = PooledBody {
            exchange: Some(exchange),
            home: Some((Arc::downgrade(&self.inner), endpoint)),
        };
        resp.map(|()| body)
    }

    /// The most recently used idle connection to `endpoint` that is still open.
    fn checkout(&self, endpoint: SocketAddr) -> Option<Conn> {
        let timeout = self.inner.settings.idle_timeout;
        let mut map = self.inner.lock();
        let list = map.get_mut(&endpoint)?;
        let mut found = None;
        while let Some(mut idle) = list.pop() {
            if idle.since.elapsed() < timeout && idle.conn.is_open() {
                found = Some(idle.conn);
                break;
            }
        }
        if list.is_empty() {
            map.remove(&endpoint);
        }
        found
    }

    /// A new connection. Its future (TCP connect, TLS handshake: ~1.5 KB) is boxed, so that
    /// it does not size every request's future, most of which reuse a connection.
    async fn connect(&self, endpoint: SocketAddr) -> Result<Conn, UpstreamError> {
        Ok(Conn::new(Box::pin(self.inner.open(endpoint)).await?))
    }
}

// === impl Inner ===

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdleMap> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection to `endpoint`, TLS when the cluster originates it.
    async fn open(&self, endpoint: SocketAddr) -> Result<Stream, UpstreamError> {
        transport::connect(endpoint, &self.settings, self.tls.as_ref()).await
    }

    /// Takes back a connection whose last response ended; starts the reaper if none runs.
    fn check_in(self: &Arc<Self>, endpoint: SocketAddr, conn: Conn) {
        let limit = self.settings.max_requests_per_connection;
        if limit > 0 && conn.uses >= limit {
            return;
        }
        let mut map = self.lock();
        let list = map.entry(endpoint).or_default();
        if list.len() >= MAX_IDLE_PER_ENDPOINT {
            list.remove(0);
        }
        list.push(Idle {
            conn,
            since: Instant::now(),
        });
        if !self.reaping.load(Ordering::Relaxed) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                self.reaping.store(true, Ordering::Relaxed);
                rt.spawn(reap(Arc::downgrade(self)));
            }
        }
    }

    /// Drops idle connections the upstream closed; with `trim`, first closes those idle past
    /// the timeout, and half of the surplus (`to_close`). `false` when nothing is left idle: the
    /// reaper then stops (`reaping` cleared, under the lock).
    fn prune(&self, now: Instant, trim: bool) -> bool {
        let timeout = self.settings.idle_timeout;
        let mut closed = Vec::new();
        let mut map = self.lock();
        map.retain(|_, list| {
            if trim {
                let idle_for: Vec<Duration> = list.iter().map(|i| now - i.since).collect();
                let n = to_close(&idle_for, timeout);
                closed.extend(list.drain(..n));
            }
            list.retain_mut(|idle| idle.conn.is_open());
            !list.is_empty()
        });
        let any = !map.is_empty();
        if !any {
            self.reaping.store(false, Ordering::Relaxed);
        }
        drop(map);
        drop(closed);
        any
    }
}

/// How many of an endpoint's idle connections to close now, given how long each has been idle
/// (oldest first, as the idle list keeps them): those past the idle timeout, then half (rounded
/// up) of those idle for a whole `TRIM_EVERY` beyond the newest `TRIM_KEEPS`. Requests take the
/// most recently used connection, so one idle that long was not needed by the traffic of the
/// last interval: after a spike the pool shrinks by half every interval (HAProxy's idle-pool
/// purge does the same) and its memory goes back within a minute, instead of after the idle
/// timeout (90 s by default, 1 h in Istio).
fn to_close(idle_for: &[Duration], timeout: Duration) -> usize {
    let expired = idle_for.partition_point(|d| *d >= timeout);
    let unused = idle_for
        .partition_point(|d| *d >= TRIM_EVERY)
        .min(idle_for.len().saturating_sub(TRIM_KEEPS))
        .max(expired);
    expired + (unused - expired).div_ceil(2)
}

/// Closes idle connections past the idle timeout, and trims the surplus, while the pool exists
/// and has idle connections.
async fn reap(pool: Weak<Inner>) {
    let every = match pool.upgrade() {
        Some(p) => (p.settings.idle_timeout / 2).clamp(Duration::from_millis(100), TRIM_EVERY),
        None => return,
    };
    // Runs at least every `CHECK_EVERY` (closed connections go); trims once per `every`.
    let tick = every.min(CHECK_EVERY);
    let mut trimmed = Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let Some(p) = pool.upgrade() else { return };
        let now = Instant::now();
        let trim = now - trimmed >= every;
        if trim {
            trimmed = now;
        }
        if !p.prune(now, trim) {
            return;
        }
    }
}

// === impl PooledBody ===

impl PooledBody {
    /// Returns the connection to its pool if the exchange left it reusable.
    fn release(&mut self) {
        if let (Some(exchange), Some((home, endpoint))) = (self.exchange.take(), self.home.take()) {
            if let (Some(conn), Some(pool)) = (exchange.finish(), home.upgrade()) {
                pool.check_in(endpoint, conn);
            }
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(exchange) = self.exchange.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = exchange.poll_body(cx);
        match &polled {
            // Ended: the connection goes back now, not when the body is dropped.
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Err(_))) => self.exchange = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.exchange.as_ref().is_none_or(Exchange::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.exchange
            .as_ref()
            .map_or(SizeHint::with_exact(0), Exchange::size_hint)
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(list: &[u64]) -> Vec<Duration> {
        list.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[test]
    fn expired_connections_close_and_half_the_unused_surplus() {
        let timeout = Duration::from_secs(90);
        // Busy pool: every connection used within the interval.
        assert_eq!(to_close(&secs(&[9, 5, 3, 1, 0, 0, 0, 0]), timeout), 0);
        // Two expired; the newest four are kept; of the two unused ones between, one closes.
        assert_eq!(
            to_close(&secs(&[100, 95, 50, 40, 30, 20, 12, 11]), timeout),
            2 + 1
        );
        // After a spike: 100 idle for 15 s; half of the 96 beyond the 4 kept.
        assert_eq!(to_close(&vec![Duration::from_secs(15); 100], timeout), 48);
        // A quiet service keeps its last few connections until the idle timeout.
        assert_eq!(to_close(&secs(&[60, 50, 40, 30]), timeout), 0);
        assert_eq!(to_close(&secs(&[91, 50, 40, 30]), timeout), 1);
        // A short idle timeout: only expiry.
        assert_eq!(
            to_close(&secs(&[3, 2, 1, 0, 0, 0]), Duration::from_secs(2)),
            2
        );
        assert_eq!(to_close(&[], timeout), 0);
    }

    #[test]
    fn a_spike_drains_to_what_is_kept_within_a_minute() {
        let timeout = Duration::from_secs(90);
        let mut idle = 480usize;
        // One reaper run per TRIM_EVERY, every connection idle since the spike.
        for _ in 0..6 {
            idle -= to_close(&vec![Duration::from_secs(20); idle], timeout);
        }
        assert_eq!(idle, TRIM_KEEPS + 7);
    }

    /// An upstream on a real socket that answers every request with `ok`, and closes its
    /// connection when `close` is notified (then says so); counts the connections it accepted.
    async fn upstream(
        close: Arc<tokio::sync::Notify>,
    ) -> (
        SocketAddr,
        Arc<std::sync::atomic::AtomicUsize>,
        tokio::sync::mpsc::UnboundedReceiver<()>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (closed_tx, closed_rx) = tokio::sync::mpsc::unbounded_channel();
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (closed_tx, close) = (closed_tx.clone(), close.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            let n = tokio::select! {
                                read = s.read(&mut chunk) => match read {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => n,
                                },
                                () = close.notified() => {
                                    drop(s);
                                    let _ = closed_tx.send(());
                                    return;
                                }
                            };
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        buf.clear();
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted, closed_rx)
    }

    static HOST: std::sync::LazyLock<(
        http::HeaderMap,
        http::uri::PathAndQuery,
        http::uri::Authority,
    )> = std::sync::LazyLock::new(|| {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::HOST,
            http::HeaderValue::from_static("upstream"),
        );
        (
            h,
            http::uri::PathAndQuery::from_static("/"),
            http::uri::Authority::from_static("upstream"),
        )
    });

    fn outgoing(
        (headers, pq, authority): &'static (
            http::HeaderMap,
            http::uri::PathAndQuery,
            http::uri::Authority,
        ),
    ) -> Outgoing<'static> {
        Outgoing {
            method: &http::Method::GET,
            path_and_query: pq,
            headers,
            extra: &[],
            added: &[],
            authority,
        }
    }

    fn empty() -> UpstreamBody {
        use http_body_util::{BodyExt, Empty};
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    async fn get(pool: &Http1Pool, addr: SocketAddr) -> Bytes {
        use http_body_util::BodyExt;
        let resp = pool
            .send(addr, &outgoing(&HOST), empty(), false)
            .await
            .expect("response");
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn an_idle_connection_is_reused_and_a_closed_one_replaced() {
        let close = Arc::new(tokio::sync::Notify::new());
        let (addr, accepted, mut closed) = upstream(close.clone()).await;
        let pool = Http1Pool::new(&ConnectionSettings::default(), None);
        assert_eq!(get(&pool, addr).await, "ok");
        assert_eq!(pool.idle(addr), 1);
        // Reused: no new connection upstream.
        assert_eq!(get(&pool, addr).await, "ok");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(pool.idle(addr), 1);
        // The upstream closes it while it is idle: the reaper's check drops it, and the next
        // request goes on a new connection, not on the closed one.
        close.notify_one();
        closed.recv().await.unwrap();
        // The close reaches the connection's readiness when the runtime polls the reactor,
        // which a yield lets it do (bounded: a connection never seen closed fails the test).
        let mut checks = 0;
        while pool.idle(addr) > 0 && checks < 1000 {
            pool.inner.prune(Instant::now(), false);
            tokio::task::yield_now().await;
            checks += 1;
        }
        assert_eq!(pool.idle(addr), 0, "the closed connection was dropped");
        assert_eq!(get(&pool, addr).await, "ok");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_closed_idle_connection_is_not_taken() {
        let close = Arc::new(tokio::sync::Notify::new());
        let (addr, accepted, mut closed) = upstream(close.clone()).await;
        let pool = Http1Pool::new(&ConnectionSettings::default(), None);
        assert_eq!(get(&pool, addr).await, "ok");
        close.notify_one();
        closed.recv().await.unwrap();
        // Still listed as idle; checkout finds it closed (or the race is answered Stale).
        assert_eq!(pool.idle(addr), 1);
        use http_body_util::BodyExt;
        match pool.send(addr, &outgoing(&HOST), empty(), false).await {
            Ok(resp) => {
                let got = resp.into_body().collect().await.unwrap();
                assert_eq!(got.to_bytes(), "ok");
                assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
            }
            Err(e) => assert!(matches!(e, UpstreamError::Stale), "{e}"),
        }
    }

    #[tokio::test]
    async fn a_reaper_runs_only_while_connections_are_idle() {
        let reaping = |pool: &Http1Pool| pool.inner.reaping.load(Ordering::Relaxed);
        let (addr, _accepted, _closed) = upstream(Arc::new(tokio::sync::Notify::new())).await;
        let settings = ConnectionSettings {
            idle_timeout: Duration::from_secs(1),
            ..ConnectionSettings::default()
        };
        let pool = Http1Pool::new(&settings, None);
        assert!(!reaping(&pool), "no task for a pool nothing has used");
        assert_eq!(get(&pool, addr).await, "ok");
        assert!(reaping(&pool), "started by the first idle connection");
        // Past the idle timeout: closed, nothing idle, the reaper stops.
        assert!(!pool
            .inner
            .prune(Instant::now() + Duration::from_secs(2), true));
        assert_eq!(pool.idle(addr), 0);
        assert!(!reaping(&pool));
        // And starts again with the next one.
        assert_eq!(get(&pool, addr).await, "ok");
        assert!(reaping(&pool));
        assert!(pool.inner.prune(Instant::now(), true));
    }
}
