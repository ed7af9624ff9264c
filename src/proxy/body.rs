//! Bodies on the forwarding path. `Replay` streams the request body to the first attempt while
//! keeping up to 1 MiB (Envoy's buffer limit) so a retry or a mirror can send it again; beyond
//! that, replay is abandoned and the body just streams. `ResponseBody` carries an attempt's
//! guards (circuit-breaker slot, in-flight count) until the response ends, and the route deadline.
//! `ClientBody` marks the client's body failing, so that failure is blamed on the client.
//! May not touch: routing, endpoint choice.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as _, Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::upstream::{ActiveRequest, Admission, RespBody, RetryPermit};

use super::request_body::RequestBody;
use super::{Body, BoxError};

/// Envoy's per-connection buffer limit: the most request body kept for replay.
pub const REPLAY_LIMIT: usize = 1024 * 1024;

/// A request body that can be replayed to later attempts.
#[derive(Debug, Clone)]
pub struct Replay {
    shared: Arc<Mutex<Shared>>,
    hint: SizeHint,
}

/// How far the body got, for mirrors waiting to send their copy.
#[derive(Debug, Clone)]
pub enum Progress {
    Streaming,
    /// Fully received and kept: the data chunks and trailers.
    Complete(Arc<(Vec<Bytes>, Option<HeaderMap>)>),
    /// Over the limit, or the client's body failed: no copy will exist.
    Abandoned,
}

struct Shared {
    /// The part of the client's body not read yet.
    rest: Body,
    chunks: Vec<Bytes>,
    buffered: usize,
    /// More than `REPLAY_LIMIT` came: nothing is kept, replay is off.
    overflowed: bool,
    /// The client's body ended (`trailers` are its trailers, if any).
    done: bool,
    failed: bool,
    trailers: Option<HeaderMap>,
    /// The attempt allowed to read; bodies of earlier attempts fail when polled.
    current: u32,
    progress: Option<watch::Sender<Progress>>,
    /// When the client's body ended (the route timeout starts then).
    ended: watch::Sender<Option<Instant>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("buffered", &self.buffered)
            .field("overflowed", &self.overflowed)
            .field("done", &self.done)
            .field("current", &self.current)
            .finish()
    }
}

/// One attempt's view of a `Replay`: the kept chunks first, then the rest of the client's body.
#[derive(Debug)]
pub struct ReplayBody {
    shared: Arc<Mutex<Shared>>,
    attempt: u32,
    /// Next kept chunk to send.
    pos: usize,
    trailers_sent: bool,
    hint: SizeHint,
}

/// The client's request body. When it fails (a malformed chunk, the client gone mid-body) the
/// error is a `ClientBodyError` and `ClientFailed` turns true, so the failed attempt is answered
/// as the client's fault (400), never as the upstream's (503), and not held against the endpoint.
pub struct ClientBody {
    inner: RequestBody,
    failed: ClientFailed,
    /// Bytes read so far (the access log's `%BYTES_RECEIVED%`).
    received: Arc<std::sync::atomic::AtomicU64>,
}

/// Did the client's request body fail? Shared by a `ClientBody` and the attempt loop.
#[derive(Debug, Clone, Default)]
pub struct ClientFailed(Arc<AtomicBool>);

/// The error a `ClientBody` yields: the client's body failed.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body failed: {0}")]
pub struct ClientBodyError(#[source] hyper::Error);

/// Held by an attempt until its response ends.
#[derive(Debug)]
pub struct AttemptGuard {
    pub _admission: Admission,
    pub _active: ActiveRequest,
    pub retry: Option<RetryPermit>,
}

/// An upstream response body that releases the attempt's guards when it ends and fails (so the
/// downstream stream is reset) if the route deadline passes before it ends.
pub struct ResponseBody {
    inner: RespBody,
    deadline: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    _guard: AttemptGuard,
}

// === impl Replay ===

impl Replay {
    /// Wraps the client's body. `mirrored`: keep a `Progress` channel for mirrors.
    pub fn new(body: Body, mirrored: bool) -> Replay {
        let hint = body.size_hint();
        let progress = mirrored.then(|| watch::channel(Progress::Streaming).0);
        Replay {
            shared: Arc::new(Mutex::new(Shared {
                rest: body,
                chunks: Vec::new(),
                buffered: 0,
                overflowed: false,
                done: false,
                failed: false,
                trailers: None,
                current: 0,
                progress,
                ended: watch::channel(None).0,
            })),
            hint,
        }
    }

    /// The body for attempt `attempt`; from now on, earlier attempts' bodies fail when polled.
    pub fn body(&self, attempt: u32) -> ReplayBody {
        self.lock().current = attempt;
        ReplayBody {
            shared: self.shared.clone(),
            attempt,
            pos: 0,
            trailers_sent: false,
            hint: self.hint,
        }
    }

    /// Can another attempt still get the whole body?
    pub fn replayable(&self) -> bool {
        let s = self.lock();
        !s.overflowed && !s.failed
    }

    /// When the client's body ended: `None` until it does.
    pub fn ended(&self) -> watch::Receiver<Option<Instant>> {
        self.lock().ended.subscribe()
    }

    /// Follows the body's progress (for mirrors); `None` unless created with `mirrored`.
    pub fn progress(&self) -> Option<watch::Receiver<Progress>> {
        self.lock().progress.as_ref().map(|tx| tx.subscribe())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === impl Shared ===

impl Shared {
    /// The client's body ended.
    fn finish(&mut self) {
        self.done = true;
        self.ended.send_replace(Some(Instant::now()));
    }

    fn report(&mut self, p: Progress) {
        if let Some(tx) = self.progress.take() {
            tx.send_replace(p);
        }
    }
}

// === impl ReplayBody ===

impl http_body::Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut s = this.shared.lock().unwrap_or_else(|e| e.into_inner());
        if s.current != this.attempt {
            return Poll::Ready(Some(Err("request body taken over by a retry".into())));
        }
        if let Some(chunk) = s.chunks.get(this.pos) {
            let chunk = chunk.clone();
            this.pos += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if s.done {
            if !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(t) = s.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
            }
            return Poll::Ready(None);
        }
        if s.failed {
            return Poll::Ready(Some(Err("the client's request body failed".into())));
        }
        let frame = match Pin::new(&mut s.rest).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(f) => f,
        };
        match frame {
            None => {
                s.finish();
                this.trailers_sent = true;
                let kept = Arc::new((s.chunks.clone(), None));
                if !s.overflowed {
                    s.report(Progress::Complete(kept));
                }
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                s.failed = true;
                s.report(Progress::Abandoned);
                Poll::Ready(Some(Err(e)))
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if !s.overflowed {
                        if s.buffered + data.len() > REPLAY_LIMIT {
                            s.overflowed = true;
                            s.chunks = Vec::new();
                            this.pos = 0;
                            s.report(Progress::Abandoned);
                        } else {
                            s.buffered += data.len();
                            s.chunks.push(data.clone());
                            this.pos += 1;
                        }
                    }
                    // With a content-length, hyper stops polling once the last byte is written,
                    // so the end is noticed here rather than by a final `None`.
                    if s.rest.is_end_stream() {
                        s.finish();
                        this.trailers_sent = true;
                        if !s.overflowed {
                            let kept = Arc::new((s.chunks.clone(), None));
                            s.report(Progress::Complete(kept));
                        }
                    }
                } else if let Some(t) = frame.trailers_ref() {
                    s.finish();
                    s.trailers = Some(t.clone());
                    this.trailers_sent = true;
                    if !s.overflowed {
                        let kept = Arc::new((s.chunks.clone(), Some(t.clone())));
                        s.report(Progress::Complete(kept));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.current == self.attempt
            && s.done
            && self.pos >= s.chunks.len()
            && (self.trailers_sent || s.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

// === impl ClientBody ===

impl ClientBody {
    pub fn new(
        inner: RequestBody,
        failed: ClientFailed,
        received: Arc<std::sync::atomic::AtomicU64>,
    ) -> ClientBody {
        ClientBody {
            inner,
            failed,
            received,
        }
    }
}

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                self.failed.0.store(true, Ordering::Release);
                Poll::Ready(Some(Err(Box::new(ClientBodyError(e)))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.received.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other.map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === impl ClientFailed ===

impl ClientFailed {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

// === impl ResponseBody ===

impl ResponseBody {
    /// `deadline` resolves when the route timeout expires.
    pub fn new(
        inner: RespBody,
        deadline: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
        guard: AttemptGuard,
    ) -> Self {
        ResponseBody {
            inner,
            deadline,
            _guard: guard,
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(d) = self.deadline.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Err("upstream request timeout".into())));
            }
        }
        Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn chunks(parts: Vec<&'static [u8]>) -> Body {
        let s = futures_util::stream::iter(
            parts
                .into_iter()
                .map(|p| Ok::<_, BoxError>(Frame::data(Bytes::from_static(p)))),
        );
        BodyExt::boxed_unsync(StreamBody::new(s))
    }

    async fn read(mut b: ReplayBody) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        while let Some(f) = b.frame().await {
            let f = f.map_err(|e| e.to_string())?;
            if let Some(d) = f.data_ref() {
                out.extend_from_slice(d);
            }
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_retry_replays_what_the_first_attempt_read() {
        let r = Replay::new(chunks(vec![b"ab", b"cd", b"ef"]), true);
        let mut progress = r.progress().unwrap();
        let mut first = r.body(1);
        // The first attempt reads one chunk, then fails.
        let f = first.frame().await.unwrap().unwrap();
        assert_eq!(f.data_ref().unwrap().as_ref(), b"ab");
        assert!(r.replayable());
        let second = r.body(2);
        assert!(first.frame().await.unwrap().is_err(), "superseded");
        assert_eq!(read(second).await.unwrap(), b"abcdef");
        progress.changed().await.unwrap();
        let Progress::Complete(kept) = &*progress.borrow() else {
            panic!("not complete")
        };
        assert_eq!(kept.0.concat(), b"abcdef");
        assert_eq!(read(r.body(3)).await.unwrap(), b"abcdef");
    }

    #[tokio::test]
    async fn over_the_limit_it_streams_but_cannot_replay() {
        let big: &'static [u8] = Box::leak(vec![b'x'; 700 * 1024].into_boxed_slice());
        let r = Replay::new(chunks(vec![big, big, b"end"]), true);
        let progress = r.progress().unwrap();
        let all = read(r.body(1)).await.unwrap();
        assert_eq!(all.len(), 1400 * 1024 + 3);
        assert!(!r.replayable());
        assert!(matches!(&*progress.borrow(), Progress::Abandoned));
    }
}
