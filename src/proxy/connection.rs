//! One downstream HTTP connection's life once its protocol is known: served while active
//! (`http_conn::HttpConn`: meshgate's own HTTP/1 server, hyper's HTTP/2 one), parked while quiet
//! (HTTP/1: the server and its buffers let go, `http_conn::Parked`),
//! and closed by the idle timeout, the maximum connection duration, a GOAWAY request, stop or
//! drain (HTTP/2 gets a GOAWAY when draining starts; HTTP/1 responses then say `close`).
//!
//! The active phase runs in its own boxed future, so a parked connection's task keeps only the
//! stream, the service and one timer (`benches/RESULTS.md`: memory per idle connection).
//! May not touch: accepting, TLS handshakes, requests (the listener and the service do).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::conn_service::{ConnServe, ConnStream};
use super::conn_state::{quiet_for, ConnState};
use super::gate::Gated;
use super::http_conn::{Builders, HttpConn, Parked, PARKED_READ};

/// A connection's timeouts (`listener::Limits`), `None` is off.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timers {
    pub idle: Option<Duration>,
    pub park_after: Option<Duration>,
    /// When the connection is too old (`max_connection_duration` after accept).
    pub deadline: Option<Instant>,
}

/// What the connection watches besides its own bytes.
pub(super) struct Watches {
    /// Turns true when the listener stops (removed, shutdown).
    pub stop: watch::Receiver<bool>,
    /// Turns true when the gateway starts draining.
    pub drain: watch::Receiver<bool>,
    /// Draining has been seen (or the connection was accepted while draining).
    pub draining: bool,
}

/// How an active phase ended.
enum Ended<T, S> {
    Closed,
    /// Boxed: one pointer in the task in every phase, instead of the stream and service twice
    /// (the generator kept a slot for `Ended` and one for the parked value).
    Parked(Box<Parked<T, S>>),
}

/// What a connection keeps from phase to phase, owned, so a parked connection can move to a
/// task of its own (`run`).
pub(super) struct Life<G> {
    pub builders: Arc<Builders>,
    pub state: Arc<ConnState>,
    pub watches: Watches,
    pub timers: Timers,
    /// Decremented when the connection ends.
    pub active_gauge: metrics::Gauge,
    pub parked_gauge: metrics::Gauge,
    pub peer: std::net::SocketAddr,
    /// Held until the connection ends (the listener's count of open connections).
    pub _guard: G,
}

/// Serves `conn` until it closes or parks (quiet for `timers.park_after`).
///
/// Each phase of a connection has a task of its own: a parked connection waits in a new task
/// (`parked_phase`) and this one ends, and it is served again in another (`resume`). A task is
/// allocated when its phase starts: the task that served requests was allocated among the
/// transient memory of the requests of its time, and would pin those allocator pages for as
/// long as the connection idles; the parked task is the size of what it holds
/// (`benches/RESULTS.md`: memory per idle connection).
pub(super) async fn run<T, S, G>(conn: HttpConn<T, S>, mut life: Life<G>)
where
    T: ConnStream,
    S: ConnServe,
    G: Send + 'static,
{
    // Boxed: the active phase's state (hyper's connection, the select over every event) lives
    // only while the connection is active.
    let ended = Box::pin(active(
        conn,
        &life.state,
        &mut life.watches,
        life.timers,
        life.peer,
    ))
    .await;
    match ended {
        Ended::Closed => life.active_gauge.decrement(1.0),
        Ended::Parked(parked) => {
            tokio::spawn(parked_phase(*parked, life));
        }
    }
}

/// A parked connection's task: waits for its next bytes, and hands the connection to a new task
/// that serves it (`resume`).
async fn parked_phase<T, S, G>(mut parked: Parked<T, S>, mut life: Life<G>)
where
    T: ConnStream,
    S: ConnServe,
    G: Send + 'static,
{
    life.parked_gauge.increment(1.0);
    let mut first = [0u8; PARKED_READ];
    let resumed = wait_parked(&mut parked, &mut first, &mut life.watches, life.timers).await;
    life.parked_gauge.decrement(1.0);
    match resumed {
        Some(n) => resume(parked.resume(&life.builders, &first[..n]), life),
        None => life.active_gauge.decrement(1.0),
    }
}

/// Serves a resumed connection in a task of its own (`run`).
fn resume<T, S, G>(conn: HttpConn<T, S>, life: Life<G>)
where
    T: ConnStream,
    S: ConnServe,
    G: Send + 'static,
{
    // A named type (boxed) for the task: `run` spawns `parked_phase`, which spawns `run`.
    let task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
        Box::pin(run(conn, life));
    tokio::spawn(task);
}

/// Serves until hyper's connection ends: closed, or let go for parking.
async fn active<T, S>(
    mut conn: HttpConn<T, S>,
    state: &ConnState,
    watches: &mut Watches,
    timers: Timers,
    peer: std::net::SocketAddr,
) -> Ended<T, S>
where
    T: ConnStream,
    S: ConnServe,
{
    // Counted from the start of this phase (a resumed connection was quiet while parked).
    let idle = async {
        match timers.idle {
            Some(t) => quiet_for(state, t, true).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(idle);
    let too_old = until(timers.deadline);
    tokio::pin!(too_old);
    // The park asked of hyper and the request count then (a request that raced it gets
    // `connection: close`, so that connection is closed, not parked).
    let mut parking: Option<u64> = None;
    loop {
        let can_park = parking.is_none()
            && timers.park_after.is_some()
            && conn.can_park()
            && !state.tunnel.load(Ordering::Relaxed);
        // The connection's rare events, polled only when one of them woke the task (`Gated`):
        // hyper's connection is polled on every wake.
        let event = {
            let rare = async {
                tokio::select! {
                    // Stopped (listener removed, shutdown): HTTP/2 gets a GOAWAY, an idle
                    // HTTP/1 connection closes, a busy one closes after its response.
                    _ = watches.stop.changed() => Rare::Close,
                    // Idle, too old, or past its request budget: the same graceful close.
                    () = &mut idle => {
                        tracing::debug!(%peer, "idle timeout");
                        Rare::Close
                    }
                    () = &mut too_old => {
                        tracing::debug!(%peer, "max connection duration");
                        Rare::Close
                    }
                    () = state.goaway.notified() => Rare::Close,
                    () = drained(watches.drain.clone()), if !watches.draining => Rare::Drain,
                    // Quiet for a while: hyper lets go of the connection (an idle one ends at
                    // once) without closing the socket, which is parked.
                    () = quiet_for(state, timers.park_after.unwrap_or(Duration::MAX), true),
                        if can_park => Rare::Park,
                }
            };
            tokio::pin!(rare);
            let mut gated = Gated::new();
            std::future::poll_fn(|cx| {
                if let Poll::Ready(res) = Pin::new(&mut conn).poll(cx) {
                    return Poll::Ready(Err(res));
                }
                gated.poll(rare.as_mut(), cx).map(Ok)
            })
            .await
        };
        // Whether to close the connection gracefully now.
        let close = match event {
            Err(res) => {
                if let Some(at) = parking.take() {
                    state.parking.store(false, Ordering::Relaxed);
                    if res.is_ok() && state.requests.load(Ordering::Acquire) == at {
                        if let Some(parked) = conn.into_parked() {
                            return Ended::Parked(Box::new(parked));
                        }
                    }
                    return Ended::Closed;
                }
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection error");
                }
                return Ended::Closed;
            }
            Ok(Rare::Close) => true,
            // Draining: an HTTP/2 connection gets a GOAWAY now; HTTP/1 responses carry
            // `connection: close` (a request racing an idle close would fail).
            Ok(Rare::Drain) => {
                watches.draining = true;
                state.is_h2.load(Ordering::Relaxed)
            }
            Ok(Rare::Park) => {
                parking = Some(state.requests.load(Ordering::Acquire));
                state.parking.store(true, Ordering::Relaxed);
                conn.graceful_shutdown();
                false
            }
        };
        if close {
            // A park under way is a close now: the socket is shut down after all.
            state.parking.store(false, Ordering::Relaxed);
            conn.graceful_shutdown();
            let _ = (&mut conn).await;
            return Ended::Closed;
        }
    }
}

/// What woke an active connection besides its own bytes.
enum Rare {
    /// Stop, the idle timeout, the connection's age or a GOAWAY request: close gracefully.
    Close,
    /// The gateway started draining.
    Drain,
    /// Quiet for `park_after`: park.
    Park,
}

/// Waits, holding no buffers, for a parked connection's next bytes: their count in `first`, or
/// `None` to close it (the client closed, stop, the idle timeout or the connection's age). Draining
/// is not watched here: the next response says `connection: close` (closing now could race a
/// request already on its way).
async fn wait_parked<T, S>(
    parked: &mut Parked<T, S>,
    first: &mut [u8; PARKED_READ],
    watches: &mut Watches,
    timers: Timers,
) -> Option<usize>
where
    T: ConnStream,
    S: ConnServe,
{
    // Nothing moves while parked: the idle timeout is a plain deadline from here, one timer
    // together with the connection's age.
    let idle_at = timers.idle.map(|t| Instant::now() + t);
    let close_at = match (idle_at, timers.deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    tokio::select! {
        read = parked.read(first) => match read {
            Ok(n) if n > 0 => Some(n),
            _ => None,
        },
        _ = watches.stop.changed() => None,
        () = until(close_at) => None,
    }
}

/// Sleeps until `at` (forever if `None`).
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending::<()>().await,
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
