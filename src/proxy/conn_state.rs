//! One downstream connection's shared state and the I/O wrapper under hyper: the activity and
//! in-flight counters the idle timers read (`quiet_for`), and the request headers timeout, whose
//! 408 is written here because hyper is mid-parse when it fires.
//! May not touch: routing, the service, accepting (`listener.rs` owns the connection's task).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// Quiet periods are checked this many times per timeout: they fire within 1¼ of their value.
const QUIET_TICKS: u32 = 4;

/// One connection's counters, shared by its I/O wrapper, its service and its task.
#[derive(Debug, Default)]
pub(super) struct ConnState {
    pub is_h2: AtomicBool,
    /// Upgraded (WebSocket): the bytes are a tunnel's, no more HTTP/1 heads.
    pub tunnel: AtomicBool,
    /// Requests handed to the service so far.
    pub requests: AtomicU64,
    /// Requests whose response head is not produced yet.
    pub in_flight: AtomicUsize,
    /// Bumped on every read and write that moved bytes.
    pub activity: AtomicU64,
    /// The service asks the task for a GOAWAY (HTTP/2 max requests reached).
    pub goaway: Notify,
    /// The task is parking the connection: hyper's shutdown of the stream is passed over, the
    /// socket stays open for the next request (`http_conn::Parked`).
    pub parking: AtomicBool,
}

/// Counts a request as in flight until dropped.
pub(super) struct InFlight(pub Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves once `state` has seen no bytes move for `t` (and, if `idle`, no request in flight),
/// checked `QUIET_TICKS` times per `t`: so between `t` and 1¼ `t` after the last activity.
pub(super) async fn quiet_for(state: &ConnState, t: Duration, idle: bool) {
    quiet(&state.activity, t, || {
        idle && state.in_flight.load(Ordering::Acquire) > 0
    })
    .await;
}

/// Resolves once `activity` has not moved for `t` while `busy()` was false at every check,
/// checked `QUIET_TICKS` times per `t`. The idle timers of HTTP connections and TCP tunnels.
pub(super) async fn quiet(activity: &AtomicU64, t: Duration, busy: impl Fn() -> bool) {
    let tick = (t / QUIET_TICKS).max(Duration::from_millis(1));
    let mut last = activity.load(Ordering::Relaxed);
    let mut quiet = 0;
    loop {
        tokio::time::sleep(tick).await;
        let now = activity.load(Ordering::Relaxed);
        if now != last || busy() {
            last = now;
            quiet = 0;
        } else {
            quiet += 1;
            if quiet >= QUIET_TICKS {
                return;
            }
        }
    }
}

/// The bytes of the 408 a slow request head gets (written under hyper, which is mid-parse).
pub(super) fn request_timeout_reply(server: Option<&HeaderValue>) -> Vec<u8> {
    let mut out =
        b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n".to_vec();
    if let Some(server) = server {
        out.extend_from_slice(b"server: ");
        out.extend_from_slice(server.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

pin_project! {
    /// The connection under hyper: counts activity for the idle timers, and answers a request
    /// head that takes longer than the request headers timeout with a 408, itself, since hyper
    /// is mid-parse (hyper then reads end of stream and closes).
    pub(super) struct TimedIo<T> {
        #[pin]
        inner: T,
        state: Arc<ConnState>,
        headers_timeout: Option<Duration>,
        // Armed at the first byte read with no request in flight; disarmed once the service
        // got a request (the head was complete). Boxed so hyper gets an `Unpin` connection;
        // made at the first request. Not reset per request: it may fire before `deadline`
        // (an earlier head's), and is then set to `deadline` (a reset per request moved a
        // timer-wheel entry each time).
        head_timer: Option<Pin<Box<Sleep>>>,
        // When the head being read is late.
        deadline: Instant,
        // `requests` when the timer was armed.
        armed_at: Option<u64>,
        reply: Arc<[u8]>,
        first_read: bool,
        timed_out: bool,
    }
}

impl<T> TimedIo<T> {
    pub(super) fn new(
        inner: T,
        state: Arc<ConnState>,
        headers_timeout: Option<Duration>,
        reply: Arc<[u8]>,
    ) -> Self {
        TimedIo {
            inner,
            state,
            headers_timeout,
            head_timer: None,
            deadline: Instant::now(),
            armed_at: None,
            reply,
            first_read: true,
            timed_out: false,
        }
    }
}

impl<T: AsyncRead + AsyncWrite> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut this = self.project();
        if *this.timed_out {
            return Poll::Ready(Ok(()));
        }
        let requests = this.state.requests.load(Ordering::Acquire);
        if this.armed_at.is_some_and(|at| at != requests) {
            *this.armed_at = None;
        }
        let before = buf.filled().len();
        match this.inner.as_mut().poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().get(before..).unwrap_or_default();
                if !read.is_empty() {
                    this.state.activity.fetch_add(1, Ordering::Relaxed);
                    if std::mem::take(this.first_read) && read.starts_with(b"PRI ") {
                        // The HTTP/2 preface: its streams are not HTTP/1 heads.
                        this.state.is_h2.store(true, Ordering::Relaxed);
                    }
                    if let Some(t) = *this.headers_timeout {
                        if this.armed_at.is_none()
                            && this.state.in_flight.load(Ordering::Acquire) == 0
                            && !this.state.is_h2.load(Ordering::Relaxed)
                            && !this.state.tunnel.load(Ordering::Relaxed)
                        {
                            *this.armed_at = Some(requests);
                            *this.deadline = Instant::now() + t;
                            if this.head_timer.is_none() {
                                *this.head_timer =
                                    Some(Box::pin(tokio::time::sleep_until(*this.deadline)));
                            }
                        }
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let deadline = *this.deadline;
                let expired = this.armed_at.is_some()
                    && this.head_timer.as_mut().is_some_and(|timer| {
                        // Pending: its deadline (this head's or an earlier one's) is still
                        // ahead, so this head is not late either.
                        if timer.as_mut().poll(cx).is_pending() {
                            return false;
                        }
                        if timer.deadline() >= deadline {
                            return true;
                        }
                        // Fired for an earlier head: set to this one's deadline and polled
                        // again (which registers it, or finds that one passed too).
                        timer.as_mut().reset(deadline);
                        timer.as_mut().poll(cx).is_ready()
                    });
                if expired {
                    // Best effort: a 408 fits any send buffer a slow client left empty.
                    let _ = this.inner.as_mut().poll_write(cx, &this.reply[..]);
                    let _ = this.inner.as_mut().poll_flush(cx);
                    *this.timed_out = true;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.state.activity.fetch_add(1, Ordering::Relaxed);
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if this.state.parking.load(Ordering::Relaxed) {
            // hyper ends its connection to let go of it, not to close it. The head timer goes
            // too (made again at the next request's first byte): a parked connection holds no
            // timer of its own.
            *this.head_timer = None;
            *this.armed_at = None;
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.state.activity.fetch_add(1, Ordering::Relaxed);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
