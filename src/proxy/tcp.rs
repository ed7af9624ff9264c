//! One connection on a TLS-passthrough or TCP port, or the decrypted stream of a TLS-terminated
//! TCP chain: read the ClientHello's SNI without terminating (passthrough), pick the route and a
//! weighted cluster, admit it under the cluster's circuit breakers, pick and connect an endpoint,
//! replay the ClientHello bytes, then copy both ways until one side closes or nothing moves for
//! the route's idle timeout (Envoy's TCP proxy default, 1 h, or the DestinationRule's
//! `tcp.idleTimeout`). No route, no cluster, no endpoint or a failed connect closes the
//! connection (as Envoy: no filter chain, or the TCP proxy gives up). Counted in Envoy's TCP
//! proxy stats; one access log line per connection.
//! May not touch: HTTP, `config::*`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use crate::route::{L4Route, L4Table};
use crate::telemetry::AccessLine;
use crate::upstream::{Class, Pick};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::conn_state::quiet;
use super::Shared;

pub use crate::route::TCP_IDLE_TIMEOUT;

/// Envoy's TCP proxy stats of one port (`tcp_prefix` is Istio's listener stat prefix).
#[derive(Clone)]
pub(super) struct TcpStats {
    cx_total: metrics::Counter,
    cx_active: metrics::Gauge,
    no_route: metrics::Counter,
    rx_bytes: metrics::Counter,
    tx_bytes: metrics::Counter,
    idle_timeout: metrics::Counter,
}

impl TcpStats {
    pub fn new(gateway_port: u16) -> TcpStats {
        let p = format!("outbound_0.0.0.0_{gateway_port}");
        TcpStats {
            cx_total: metrics::counter!("envoy_tcp_downstream_cx_total", "tcp_prefix" => p.clone()),
            cx_active: metrics::gauge!("envoy_tcp_downstream_cx_active", "tcp_prefix" => p.clone()),
            no_route: metrics::counter!("envoy_tcp_downstream_cx_no_route", "tcp_prefix" => p.clone()),
            rx_bytes: metrics::counter!("envoy_tcp_downstream_cx_rx_bytes_total", "tcp_prefix" => p.clone()),
            tx_bytes: metrics::counter!("envoy_tcp_downstream_cx_tx_bytes_total", "tcp_prefix" => p.clone()),
            idle_timeout: metrics::counter!("envoy_tcp_idle_timeout", "tcp_prefix" => p),
        }
    }
}

/// Facts of one connection, for the access log.
#[derive(Default)]
struct Record {
    sni: Option<String>,
    route: Option<Arc<str>>,
    cluster: Option<Arc<str>>,
    upstream: Option<SocketAddr>,
    upstream_local: Option<SocketAddr>,
    flags: &'static str,
    received: u64,
    sent: u64,
}

/// The downstream side of one tunnel: the accepted TCP stream, or the decrypted stream of a
/// TLS-terminated TCP chain (with the SNI its handshake had).
pub(super) struct Downstream<S> {
    pub stream: S,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The SNI of a handshake done before (TLS-terminated TCP), or of `hello`, for the access log.
    pub sni: Option<String>,
    /// A ClientHello already read on a passthrough port (one with terminated chains too, where
    /// the SNI decided): replayed to the upstream instead of read here.
    pub hello: Option<Vec<u8>>,
}

/// Serves one accepted connection on a passthrough or TCP port, or one TLS-terminated TCP
/// connection (`table` is then `L4Table::Tcp`).
pub(super) async fn serve<S>(
    down: Downstream<S>,
    table: Arc<L4Table>,
    shared: Arc<Shared>,
    hello_timeout: Duration,
    stats: TcpStats,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Downstream {
        stream: mut down,
        peer,
        local,
        sni,
        hello: pre_read,
    } = down;
    let start = SystemTime::now();
    let began = tokio::time::Instant::now();
    stats.cx_total.increment(1);
    stats.cx_active.increment(1.0);
    let mut rec = Record {
        sni,
        ..Record::default()
    };
    let mut hello = Vec::new();
    let route: Option<Arc<L4Route>> = match &*table {
        L4Table::Tcp(route) => route.clone(),
        L4Table::Passthrough(table) if pre_read.is_some() => {
            hello = pre_read.unwrap_or_default();
            table.find(rec.sni.as_deref()).cloned()
        }
        L4Table::Passthrough(sni) => {
            match tokio::time::timeout(hello_timeout, read_sni(&mut down, &mut hello)).await {
                Ok(Ok(name)) => {
                    let found = sni.find(name.as_deref()).cloned();
                    rec.sni = name;
                    found
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "no TLS ClientHello: closed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "ClientHello timeout: closed");
                    None
                }
            }
        }
    };
    rec.received = hello.len() as u64;
    match route {
        None => {
            stats.no_route.increment(1);
            rec.flags = "NR";
        }
        Some(route) => {
            rec.route = Some(route.name.clone());
            proxy(&mut down, &hello, &route, &shared, &stats, &mut rec).await;
        }
    }
    stats.cx_active.decrement(1.0);
    if let Some(log) = &shared.access_log {
        let duration_ms = began.elapsed().as_millis() as u64;
        log.log(&AccessLine {
            start: Some(start),
            response_flags: rec.flags,
            bytes_received: rec.received,
            bytes_sent: rec.sent,
            duration_ms,
            upstream_host: rec.upstream,
            upstream_cluster: rec.cluster.as_deref(),
            upstream_local_address: rec.upstream_local,
            downstream_local_address: Some(local),
            downstream_remote_address: Some(peer),
            requested_server_name: rec.sni.as_deref(),
            route_name: rec.route.as_deref(),
            ..AccessLine::default()
        });
    }
}

/// Reads until a whole ClientHello is parsed; returns its SNI (lower case). Every byte read is
/// kept in `buf`, to be replayed to the upstream.
async fn read_sni(
    down: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> io::Result<Option<String>> {
    let accepted = crate::tls::read_client_hello(down, buf).await?;
    Ok(crate::tls::sni(&accepted.client_hello()))
}

/// Picks a cluster and an endpoint, connects, replays `hello`, then copies both ways.
async fn proxy(
    down: &mut (impl AsyncRead + AsyncWrite + Unpin),
    hello: &[u8],
    route: &L4Route,
    shared: &Shared,
    stats: &TcpStats,
    rec: &mut Record,
) {
    let Some(dest) = route.pick() else {
        rec.flags = "NR";
        return;
    };
    rec.cluster = Some(dest.key.clone());
    let cluster = dest
        .cluster
        .and_then(|id| shared.snapshot.load().clusters.get(id).cloned());
    let Some(cluster) = cluster else {
        rec.flags = "NC";
        return;
    };
    let Ok(_admission) = cluster.admit().await else {
        rec.flags = "UO";
        return;
    };
    let ep = match cluster.pick(None, &[]) {
        Pick::Endpoint(ep) => ep,
        Pick::NoHealthy => {
            rec.flags = "UH";
            return;
        }
        Pick::NoCluster => {
            rec.flags = "NC";
            return;
        }
    };
    rec.upstream = Some(ep.addr);
    let _active = ep.start_request();
    let name = cluster.spec.key.clone();
    metrics::counter!("envoy_cluster_upstream_cx_total", "cluster_name" => name.clone())
        .increment(1);
    // The cluster's socket settings and TLS origination (a DestinationRule `tls` for a TCP
    // service), the same connect the HTTP pools use.
    let mut up = match cluster.client().connect_stream(ep.addr).await {
        Ok(up) => up,
        Err(e) => {
            metrics::counter!("envoy_cluster_upstream_cx_connect_fail", "cluster_name" => name)
                .increment(1);
            cluster.record(&ep, &Class::ConnectFailure);
            tracing::debug!(upstream = %ep.addr, error = %e, "TCP upstream connect failed: closed");
            rec.flags = "UF";
            return;
        }
    };
    // A connect is the success a TCP proxy sees (it resets consecutive-error counts).
    cluster.record(
        &ep,
        &Class::Response {
            status: 200,
            grpc: None,
            ratelimited: false,
        },
    );
    rec.upstream_local = crate::upstream::local_addr(&up);
    if !hello.is_empty() && up.write_all(hello).await.is_err() {
        rec.flags = "UC";
        return;
    }
    let activity = Arc::new(AtomicU64::new(0));
    let mut down_io = Counted::new(down, activity.clone());
    let idle = async {
        match route.idle_timeout {
            Some(t) => quiet(&activity, t, || false).await,
            None => std::future::pending().await,
        }
    };
    let copied = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut down_io, &mut up) => Some(r),
        () = idle => None,
    };
    let (rx, tx) = (down_io.read, down_io.written);
    rec.received += rx;
    rec.sent = tx;
    stats.rx_bytes.increment(rec.received);
    stats.tx_bytes.increment(tx);
    match copied {
        None => {
            stats.idle_timeout.increment(1);
            rec.flags = "-";
        }
        Some(Err(e)) => tracing::debug!(upstream = %ep.addr, error = %e, "TCP tunnel ended"),
        Some(Ok(_)) => {}
    }
}

/// The downstream side of a tunnel: counts bytes each way and bumps `activity` on every move.
struct Counted<'a, S> {
    inner: &'a mut S,
    activity: Arc<AtomicU64>,
    read: u64,
    written: u64,
}

impl<'a, S> Counted<'a, S> {
    fn new(inner: &'a mut S, activity: Arc<AtomicU64>) -> Self {
        Counted {
            inner,
            activity,
            read: 0,
            written: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut *this.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            this.read += n;
            this.activity.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut *this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            this.written += *n as u64;
            this.activity.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}
