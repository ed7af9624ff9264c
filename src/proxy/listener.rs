//! Accepting connections on one listener socket, within the downstream limits (`Limits`), and
//! setting each up: the TLS handshake on an HTTPS port, the protocol (ALPN or the first bytes),
//! hyper's connection with the connection's service (`conn_service`); its life from there is
//! `connection`. Connections of a passthrough or TCP port, and those a TLS-terminated TCP chain
//! took after the handshake, go to `tcp`; on a port with both passthrough routes and terminated
//! chains the ClientHello's SNI decides (`serve_mixed`).
//! May not touch: routing, the snapshot's tables (the service does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use super::conn_service::ConnService;
use super::conn_state::{quiet_for, request_timeout_reply, ConnState, TimedIo};
use super::connection::{self, Timers, Watches};
use super::context::Conn;
use super::framing::{Framing, ScannedIo};
use super::http_conn::{sniff, Builders, HttpConn, Prefixed, Proto};
use super::service::{MAX_HEADERS, MAX_HEADER_BYTES};
use super::Shared;
use crate::route::L4Table;

/// HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`: above the 60 KiB that `service.rs` checks exactly (h2
/// counts 32 bytes more per header), so h2 and HTTP/1.1 answer the same 431 at the same size;
/// far larger lists get h2's own bare 431 and a stream reset. hyper's default is 16 KiB.
const H2_MAX_HEADER_LIST: u32 = (MAX_HEADER_BYTES + 16 * 1024) as u32;
/// Back-off after a failed accept (out of file descriptors, …): doubling from 10 ms to 1 s.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one `accept failed` log line per this long (the others are counted in the next line).
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(1);

/// Downstream connection limits and timeouts, per listener. `None` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Listen backlog of each Gateway port's socket. Default is 4096 (Envoy's; tokio's is 1024).
    pub listen_backlog: u32,
    /// From the first byte of an HTTP/1 request head to its end; past it the client gets `408`
    /// and the connection closes (Envoy's `request_headers_timeout`). Default is 10 s (Envoy's
    /// recommended edge value; Envoy and Istio leave it off, hyper's was a silent 30 s close).
    pub request_headers_timeout: Option<Duration>,
    /// A request with no bytes moving on its connection for this long, before its response
    /// started, gets `408 stream timeout` (Envoy's `stream_idle_timeout`). Default is off (istiod
    /// sets 0 at gateways, overriding Envoy's 5 min).
    pub stream_idle_timeout: Option<Duration>,
    /// A connection with no request in flight and no bytes moving for this long is closed (HTTP/2:
    /// GOAWAY first). Default is 1 h (Envoy's `idle_timeout`).
    pub idle_timeout: Option<Duration>,
    /// Connections older than this are drained: HTTP/2 gets a GOAWAY, HTTP/1 closes after the
    /// response in flight (Envoy's `max_connection_duration`). Default is off.
    pub max_connection_duration: Option<Duration>,
    /// The Nth request of a connection is its last: HTTP/1 answers it with `connection: close`,
    /// HTTP/2 sends a GOAWAY (Envoy's `max_requests_per_connection`). Default is off.
    pub max_requests_per_connection: Option<u64>,
    /// Open downstream connections, all Gateway ports together; connections past it are accepted
    /// and closed at once, counted in `meshgate_downstream_cx_overflow_total` (Envoy's
    /// `global_downstream_max_connections`). Default is off.
    pub max_connections: Option<usize>,
    /// Memory thresholds of the overload manager (`overload.rs`). Default is off.
    pub overload: super::OverloadLimits,
    /// From accept to a finished TLS handshake on an HTTPS port; past it the connection is
    /// closed and counted (istiod's 15 s `transport_socket_connect_timeout`). Default is 15 s.
    pub tls_handshake_timeout: Option<Duration>,
    /// An HTTP/1 connection with no request in flight and no bytes moving for this long is
    /// parked: hyper's connection and its two 8 KiB buffers are let go and made again when the
    /// next request arrives (`http_conn::Parked`), counted in `meshgate_downstream_cx_parked`.
    /// nginx frees its buffers at once; a short quiet period keeps busy keep-alive connections
    /// from paying for the rebuild on every request. Default is 2 s.
    pub park_idle_after: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            listen_backlog: 4096,
            request_headers_timeout: Some(Duration::from_secs(10)),
            stream_idle_timeout: None,
            idle_timeout: Some(Duration::from_secs(3600)),
            max_connection_duration: None,
            max_requests_per_connection: None,
            max_connections: None,
            overload: super::OverloadLimits::default(),
            tls_handshake_timeout: Some(crate::tls::HANDSHAKE_TIMEOUT),
            park_idle_after: Some(Duration::from_secs(2)),
        }
    }
}

/// Serves `listener` until `stop` turns true; then stops accepting and lets open connections
/// finish their in-flight requests (graceful shutdown).
pub async fn serve(
    listener: TcpListener,
    gateway_port: u16,
    shared: Arc<Shared>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let builders = Arc::new(builders());
    let timeout_reply: Arc<[u8]> = request_timeout_reply(shared.server_header.as_ref()).into();
    // Envoy's connection manager stats, with the stat prefix Istio gives a gateway's listener.
    let prefix = format!("outbound_0.0.0.0_{gateway_port}");
    let cx_overflow = metrics::counter!("meshgate_downstream_cx_overflow_total", "http_conn_manager_prefix" => prefix.clone());
    let cx_overload = metrics::counter!("envoy_http_downstream_cx_overload_reject", "http_conn_manager_prefix" => prefix.clone());
    let counters = Counters {
        cx_total: metrics::counter!("envoy_http_downstream_cx_total", "http_conn_manager_prefix" => prefix.clone()),
        cx_active: metrics::gauge!("envoy_http_downstream_cx_active", "http_conn_manager_prefix" => prefix.clone()),
        cx_parked: metrics::gauge!("meshgate_downstream_cx_parked", "http_conn_manager_prefix" => prefix.clone()),
    };
    let mut accept_errors = AcceptErrors::new(
        gateway_port,
        metrics::counter!("meshgate_accept_errors_total", "http_conn_manager_prefix" => prefix),
    );
    let mut tcp_stats = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                accept_errors.succeeded();
                a
            }
            Err(e) => {
                // Out of file descriptors or similar: pause, or this loop spins (and logs) as
                // fast as accept fails; the pending connections wait in the backlog.
                if let Some(pause) = accept_errors.failed(&e) {
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = stop.changed() => break,
                    }
                }
                continue;
            }
        };
        if limits
            .max_connections
            .is_some_and(|max| shared.open_connections() >= max)
        {
            // Accepted and closed at once, as Envoy does: the client learns now, instead of
            // waiting in the backlog until its connect times out.
            cx_overflow.increment(1);
            drop(stream);
            continue;
        }
        if shared.overload.sample_due() {
            // The connections let in since the last sample run first (they are ahead in the
            // run queue), so the memory they take shows in this sample: a burst cannot slip in
            // between two ticks of the sampler thread.
            tokio::task::yield_now().await;
            shared.overload.sample_now();
        }
        if shared.overload.level() == super::OverloadLevel::Refuse {
            // Past the overload manager's last threshold: no new connection until memory eases.
            cx_overload.increment(1);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        // A TLS-passthrough or TCP port (read per connection, so a reload applies): tunnels.
        let l4 = shared.snapshot.load().l4_port(gateway_port).cloned();
        // Passthrough routes beside terminated chains on one port: the ClientHello's SNI decides.
        let mixed = l4
            .as_ref()
            .filter(|t| matches!(***t, L4Table::Passthrough(_)))
            .and_then(|_| shared.snapshot.load().tls_port(gateway_port).cloned());
        if let (Some(table), None) = (l4.clone(), &mixed) {
            let guard = shared.track_connection();
            let hello_timeout = limits.tls_handshake_timeout.unwrap_or(Duration::MAX);
            let tcp_stats = tcp_stats
                .get_or_insert_with(|| super::tcp::TcpStats::new(gateway_port))
                .clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let _guard = guard;
                let down = super::tcp::Downstream {
                    stream,
                    peer,
                    local,
                    sni: None,
                    hello: None,
                };
                super::tcp::serve(down, table, shared, hello_timeout, tcp_stats).await;
            });
            continue;
        }
        let setup = conn_setup(
            &shared,
            &builders,
            &stop,
            &counters,
            &timeout_reply,
            limits,
            gateway_port,
            peer,
            local,
        );
        let guard = shared.track_connection();
        match (l4, mixed) {
            (Some(table), Some(tls_port)) => {
                let tcp_stats = tcp_stats
                    .get_or_insert_with(|| super::tcp::TcpStats::new(gateway_port))
                    .clone();
                tokio::spawn(serve_mixed(
                    stream, table, tls_port, setup, tcp_stats, guard,
                ));
            }
            _ => {
                tokio::spawn(serve_connection(stream, None, setup, guard));
            }
        }
    }
}

/// The per-listener metrics a connection's task updates.
#[derive(Clone)]
struct Counters {
    cx_total: metrics::Counter,
    cx_active: metrics::Gauge,
    cx_parked: metrics::Gauge,
}

#[allow(clippy::too_many_arguments)]
fn conn_setup(
    shared: &Arc<Shared>,
    builders: &Arc<Builders>,
    stop: &watch::Receiver<bool>,
    counters: &Counters,
    timeout_reply: &Arc<[u8]>,
    limits: Limits,
    gateway_port: u16,
    peer: SocketAddr,
    local: SocketAddr,
) -> Box<ConnSetup> {
    Box::new(ConnSetup {
        shared: shared.clone(),
        builders: builders.clone(),
        stop: stop.clone(),
        drain: shared.drain_watch(),
        // Accepted while draining: served, its responses carry `connection: close`.
        accepted_draining: shared.draining(),
        counters: counters.clone(),
        timeout_reply: timeout_reply.clone(),
        limits,
        gateway_port,
        peer,
        local,
    })
}

/// A connection on a port with both terminated chains and passthrough routes: its ClientHello
/// is read first, and the best server name for its SNI (exact, longest `*.` suffix, `*`; a
/// terminated chain wins a tie) says whether it is tunnelled as it is (the hello replayed) or
/// its handshake goes on here.
async fn serve_mixed(
    mut stream: TcpStream,
    table: Arc<L4Table>,
    tls_port: Arc<crate::tls::TlsPort>,
    setup: Box<ConnSetup>,
    tcp_stats: super::tcp::TcpStats,
    guard: impl Send + 'static,
) {
    let timeout = setup.limits.tls_handshake_timeout.unwrap_or(Duration::MAX);
    let read = crate::tls::read_hello(&mut stream);
    let hello = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(hello)) => hello,
        Ok(Err(e)) => {
            tracing::debug!(peer = %setup.peer, error = %e, "no TLS ClientHello: closed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %setup.peer, "ClientHello timeout: closed");
            return;
        }
    };
    let sni = hello.sni.as_deref();
    let passthrough = match &*table {
        L4Table::Passthrough(t) => t.rank(sni),
        L4Table::Tcp(_) => None,
    };
    if passthrough.is_some() && passthrough > tls_port.rank(sni) {
        let down = super::tcp::Downstream {
            stream,
            peer: setup.peer,
            local: setup.local,
            sni: hello.sni,
            hello: Some(hello.bytes),
        };
        let _guard = guard;
        super::tcp::serve(down, table, setup.shared, timeout, tcp_stats).await;
        return;
    }
    serve_connection(stream, Some(Box::new(hello)), setup, guard).await;
}

/// What a new connection's task needs from its listener (boxed: the task keeps a pointer).
struct ConnSetup {
    shared: Arc<Shared>,
    builders: Arc<Builders>,
    stop: watch::Receiver<bool>,
    drain: watch::Receiver<bool>,
    accepted_draining: bool,
    counters: Counters,
    timeout_reply: Arc<[u8]>,
    limits: Limits,
    gateway_port: u16,
    peer: SocketAddr,
    local: SocketAddr,
}

/// The stream under hyper on a downstream connection.
type ConnIo = TimedIo<ScannedIo<crate::tls::Stream>>;

/// A connection ready to be served as HTTP.
struct Ready {
    conn: HttpConn<ConnIo, ConnService>,
    state: Arc<ConnState>,
    watches: Watches,
    timers: Timers,
}

/// A downstream connection from accept to close: the TLS handshake (HTTPS ports), a
/// TLS-terminated TCP server's tunnel, or HTTP (`prepare`), served by `connection::run`.
/// `hello` is boxed: an async fn's arguments keep their room in its task for the connection's
/// whole life (an inline ClientHello was 1.4 KiB of every connection's task, TLS or not).
async fn serve_connection(
    stream: TcpStream,
    hello: Option<Box<crate::tls::Hello>>,
    setup: Box<ConnSetup>,
    guard: impl Send + 'static,
) {
    let builders = setup.builders.clone();
    let (counters, peer) = (setup.counters.clone(), setup.peer);
    // Boxed: the handshake and the wait for the first bytes are over once the connection is
    // served, and a parked connection's task should not keep room for them.
    let Some(ready) = prepare_boxed(stream, hello, setup).await else {
        return;
    };
    let Ready {
        conn,
        state,
        watches,
        timers,
    } = ready;
    let life = connection::Life {
        builders,
        state,
        watches,
        timers,
        active_gauge: counters.cx_active,
        parked_gauge: counters.cx_parked,
        peer,
        _guard: guard,
    };
    connection::run(conn, life).await;
}

/// `prepare`, boxed outside of an async fn: built inside `serve_connection`, the future took room
/// in that task's state as well as in its box (4 KiB per connection, for as long as it lives).
fn prepare_boxed(
    stream: TcpStream,
    hello: Option<Box<crate::tls::Hello>>,
    setup: Box<ConnSetup>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Ready>> + Send>> {
    Box::pin(prepare(stream, hello, setup))
}

/// The TLS handshake on an HTTPS port (a TLS-terminated TCP server's connection is tunnelled
/// here and `None` returned), then the protocol (ALPN, or the first bytes) and hyper's
/// connection with the connection's service. `None`: nothing (more) to serve.
async fn prepare(
    stream: TcpStream,
    hello: Option<Box<crate::tls::Hello>>,
    setup: Box<ConnSetup>,
) -> Option<Ready> {
    let ConnSetup {
        shared,
        builders,
        mut stop,
        drain,
        accepted_draining,
        counters,
        timeout_reply,
        limits,
        gateway_port,
        peer,
        local,
    } = *setup;
    // The port's kind is read per connection, so a reload that turns it HTTPS applies.
    let tls_port = shared.snapshot.load().tls_port(gateway_port).cloned();
    let (stream, tls) = match tls_port {
        // A ClientHello read for a port that a reload has just made plain text: nothing to
        // answer it with.
        None if hello.is_some() => return None,
        None => (crate::tls::Stream::Plain(stream), None),
        Some(port) => {
            let timeout = limits.tls_handshake_timeout.unwrap_or(Duration::MAX);
            // Boxed: its state is not kept in the connection's task for its lifetime.
            let handshake =
                crate::tls::handshake(stream, hello.map(|h| *h), &port, gateway_port, timeout);
            let (stream, facts) = Box::pin(handshake).await?;
            (stream, Some(facts))
        }
    };
    if let Some(table) = tls.as_ref().and_then(|f| f.tcp.clone()) {
        // A TLS-terminated TCP server's chain: the decrypted stream is tunnelled.
        let down = super::tcp::Downstream {
            stream,
            peer,
            local,
            sni: tls
                .as_ref()
                .and_then(|f| f.sni.as_deref().map(str::to_owned)),
            hello: None,
        };
        // Counted in the port's TCP proxy stats (looked up here: an HTTP-only port gets no TCP
        // series). Boxed, as the handshake: an HTTP connection's task does not carry a
        // tunnel's state.
        let stats = super::tcp::TcpStats::new(gateway_port);
        Box::pin(super::tcp::serve(down, table, shared, Duration::MAX, stats)).await;
        return None;
    }
    // Counted once the connection is known to be HTTP (after a TLS handshake).
    counters.cx_total.increment(1);
    counters.cx_active.increment(1.0);
    let alpn = match &stream {
        crate::tls::Stream::Tls(tls) => Proto::from_alpn(tls.get_ref().1.alpn_protocol()),
        crate::tls::Stream::Plain(_) => None,
    };
    let state = Arc::new(ConnState::default());
    // hyper hides some ambiguous framing from the service; the scanner does not.
    let framing = Framing::new();
    let mut io = TimedIo::new(
        ScannedIo::new(stream, framing.clone()),
        state.clone(),
        limits.request_headers_timeout,
        timeout_reply,
    );
    let (proto, first) = match alpn {
        Some(proto) => (proto, Bytes::new()),
        None => {
            // Waiting for the first bytes, as a connection: stop and the idle timeout apply
            // (`state` is quiet since accept).
            let idle = async {
                match limits.idle_timeout {
                    Some(t) => quiet_for(&state, t, true).await,
                    None => std::future::pending::<()>().await,
                }
            };
            let sniffed = tokio::select! {
                sniffed = sniff(&mut io) => sniffed,
                _ = stop.changed() => None,
                () = idle => None,
            };
            match sniffed {
                Some(sniffed) => sniffed,
                None => {
                    counters.cx_active.decrement(1.0);
                    return None;
                }
            }
        }
    };
    let io = Prefixed::new(io, first);
    let svc = ConnService {
        state: state.clone(),
        shared,
        framing,
        conn: Conn {
            peer,
            local,
            gateway_port,
            tls,
        },
        max_requests: limits.max_requests_per_connection,
        stream_idle_timeout: limits.stream_idle_timeout,
    };
    Some(Ready {
        conn: HttpConn::new(&builders, proto, io, svc),
        state,
        watches: Watches {
            stop,
            drain,
            draining: accepted_draining,
        },
        timers: Timers {
            idle: limits.idle_timeout,
            park_after: limits.park_idle_after,
            deadline: limits.max_connection_duration.map(|t| Instant::now() + t),
        },
    })
}

/// The hyper builders of every listener: HTTP/1.1 and HTTP/2 (h2c or ALPN `h2`) settings.
fn builders() -> Builders {
    let mut http1 = http1::Builder::new();
    http1
        .max_buf_size(MAX_HEADER_BYTES.max(8192) + 8192)
        .max_headers(MAX_HEADERS)
        // hyper's own header timeout also runs while a keep-alive connection waits for its next
        // request and closes without a 408: `TimedIo` does Envoy's instead.
        .header_read_timeout(None)
        .timer(TokioTimer::new());
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(1 << 21)
        .max_concurrent_streams(1024)
        .max_header_list_size(H2_MAX_HEADER_LIST);
    Builders {
        http1,
        http2,
        own_http1: std::env::var("MESHGATE_HTTP1_SERVER").as_deref() != Ok("hyper"),
    }
}

/// Failed accepts: counted, logged at most once per `ACCEPT_LOG_EVERY`, backed off.
struct AcceptErrors {
    gateway_port: u16,
    total: metrics::Counter,
    backoff: Duration,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    fn new(gateway_port: u16, total: metrics::Counter) -> Self {
        AcceptErrors {
            gateway_port,
            total,
            backoff: ACCEPT_BACKOFF_MIN,
            last_log: None,
            suppressed: 0,
        }
    }

    fn succeeded(&mut self) {
        self.backoff = ACCEPT_BACKOFF_MIN;
    }

    /// Counts and maybe logs `e`; how long to pause before the next accept, if at all.
    fn failed(&mut self, e: &std::io::Error) -> Option<Duration> {
        self.total.increment(1);
        // A client that reset before its connection was accepted says nothing about us.
        let client_side = matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
        );
        let pause = (!client_side).then_some(self.backoff);
        let now = Instant::now();
        if self.last_log.is_none_or(|t| now - t >= ACCEPT_LOG_EVERY) {
            tracing::warn!(
                gateway_port = self.gateway_port,
                error = %e,
                suppressed = self.suppressed,
                retry_in_ms = pause.map_or(0, |p| p.as_millis() as u64),
                "accept failed"
            );
            self.last_log = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        if pause.is_some() {
            self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF_MAX);
        }
        pause
    }
}
