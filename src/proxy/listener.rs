//! Accepting connections on one listener socket and serving HTTP/1.1 and h2c on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::framing::{Framing, ScannedIo};
use super::service::{handle, Conn};
use super::Shared;

/// Envoy's limit on request header size at an Istio gateway (60 KiB).
const MAX_HEADER_BYTES: usize = 60 * 1024;
/// Envoy's limit on the number of request headers.
const MAX_HEADERS: usize = 100;

/// Serves `listener` until `stop` turns true; then stops accepting and lets open connections
/// finish their in-flight requests (graceful shutdown).
pub async fn serve(
    listener: TcpListener,
    gateway_port: u16,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(MAX_HEADER_BYTES.max(8192) + 8192)
        .max_headers(MAX_HEADERS)
        .timer(hyper_util::rt::TokioTimer::new());
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(1 << 21)
        .max_concurrent_streams(1024);
    let builder = Arc::new(builder);
    // Envoy's connection manager stats, with the stat prefix Istio gives a gateway's listener.
    let prefix = format!("outbound_0.0.0.0_{gateway_port}");
    let cx_total = metrics::counter!("envoy_http_downstream_cx_total", "http_conn_manager_prefix" => prefix.clone());
    let cx_active =
        metrics::gauge!("envoy_http_downstream_cx_active", "http_conn_manager_prefix" => prefix);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or similar: log and keep accepting.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::task::yield_now().await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let shared = shared.clone();
        let builder = builder.clone();
        let mut stop = stop.clone();
        let drain = shared.drain_watch();
        // Accepted while draining: served, its responses carry `connection: close`.
        let accepted_draining = shared.draining();
        let guard = shared.track_connection();
        cx_total.increment(1);
        cx_active.increment(1.0);
        let cx_active = cx_active.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let conn = Conn {
                peer,
                local,
                gateway_port,
            };
            // hyper hides some ambiguous framing from the service; the scanner does not.
            let framing = Framing::new();
            let io = TokioIo::new(ScannedIo::new(stream, framing.clone()));
            let is_h2 = Arc::new(AtomicBool::new(false));
            let svc = {
                let is_h2 = is_h2.clone();
                service_fn(move |req| {
                    if req.version() == http::Version::HTTP_2 {
                        is_h2.store(true, Ordering::Relaxed);
                    }
                    let ambiguous = framing.next_request();
                    handle(shared.clone(), conn, req, ambiguous)
                })
            };
            let served = builder.serve_connection_with_upgrades(io, svc);
            tokio::pin!(served);
            let mut draining = accepted_draining;
            loop {
                tokio::select! {
                    res = served.as_mut() => {
                        if let Err(e) = res {
                            tracing::debug!(%peer, error = %e, "connection error");
                        }
                        break;
                    }
                    // Stopped (listener removed, shutdown): HTTP/2 gets a GOAWAY, an idle
                    // HTTP/1 connection closes, a busy one closes after its response.
                    _ = stop.changed() => {
                        served.as_mut().graceful_shutdown();
                        let _ = served.await;
                        break;
                    }
                    // Draining: an HTTP/2 connection gets a GOAWAY now; HTTP/1 responses carry
                    // `connection: close` (a request racing an idle close would fail).
                    () = drained(drain.clone()), if !draining => {
                        draining = true;
                        if is_h2.load(Ordering::Relaxed) {
                            served.as_mut().graceful_shutdown();
                            let _ = served.await;
                            break;
                        }
                    }
                }
            }
            cx_active.decrement(1.0);
        });
    }
}

/// Resolves once draining starts (never, if the gateway goes away first).
async fn drained(mut rx: watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
