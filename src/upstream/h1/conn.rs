//! One HTTP/1.1 exchange on an upstream connection, driven by the task of the request that owns
//! the connection: the head is written, then the request body is sent while the response head
//! is awaited and, after it, while the response body is read (an upstream may answer before it
//! has read the whole body, as an echo server does). No connection task, no channel.
//! May not touch: pooling and reuse decisions (`h1.rs`), the bytes' syntax (`encode.rs`,
//! `decode.rs`).

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderName, Method, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::decode::{self, Chunk, Chunked, Framing};
use super::encode::{self, BodyFraming, BodySize};
use super::BoxError;
use crate::upstream::error::UpstreamError;
use crate::upstream::outgoing::Outgoing;
use crate::upstream::settings::UpstreamBody;
use crate::upstream::transport::Stream;

/// The first read of a response asks for this much; a read that fills what it asked for doubles
/// the next, up to `MAX_READ`.
const FIRST_READ: usize = 4 * 1024;
const MAX_READ: usize = 64 * 1024;

/// An upstream connection between exchanges: the socket, and what it has carried.
pub struct Conn {
    io: Stream,
    /// Bytes read and not yet consumed (empty, and holding no memory, while idle).
    buf: BytesMut,
    /// Requests sent on it so far.
    pub uses: u32,
}

/// How an exchange failed before the response head.
pub enum Failed {
    /// Nothing of the request was written: its body comes back, to be sent on another
    /// connection.
    Unsent(UpstreamBody),
    /// The connection ended (closed or reset) after the request was written and before any
    /// response byte: on a reused connection, the keep-alive race.
    Closed(String),
    Error(UpstreamError),
}

/// A request written (or being written) and its response being read.
pub struct Exchange {
    conn: Conn,
    send: Sending,
    recv: Recv,
    keep_alive: bool,
    read_size: usize,
}

/// A request body being sent.
struct BodySend {
    body: UpstreamBody,
    /// Bytes the content-length still expects (`None`: chunked).
    left: Option<u64>,
    /// Chunked trailers the request declared.
    trailers: Vec<HeaderName>,
    queue: Queue,
    ended: bool,
}

/// The request side of an exchange.
enum Sending {
    /// Boxed: most requests have no body, and the exchange lives in the response body.
    Body(Box<BodySend>),
    /// All written; flushed next (TLS keeps a record buffer).
    Flush,
    Done,
    /// Writing stopped; the connection cannot carry another request.
    Failed(SendError),
}

#[derive(Debug)]
enum SendError {
    Io(io::Error),
    /// The request body failed, or did not match its content-length.
    Body(String),
}

/// The response side, after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    Head,
    Length(u64),
    Chunked(Chunked),
    Close,
    Done,
    /// The body failed; nothing more is read.
    Failed,
}

/// Buffers waiting to be written, in order: a chunk's size line, its data, its CRLF.
#[derive(Default)]
struct Queue {
    parts: [Bytes; 3],
}

// === impl Conn ===

impl Conn {
    pub fn new(io: Stream) -> Conn {
        Conn {
            io,
            buf: BytesMut::new(),
            uses: 0,
        }
    }

    /// Can this idle connection take a request? It must not have been closed by the upstream
    /// nor have sent anything unasked (checked without waiting).
    pub fn is_open(&mut self) -> bool {
        let mut probe = [0u8; 8];
        let mut buf = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(Waker::noop());
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut buf),
            Poll::Pending
        )
    }
}

/// Writes `req` on `conn` and reads the response head, sending the body meanwhile.
pub async fn exchange(
    mut conn: Conn,
    out: &Outgoing<'_>,
    body: UpstreamBody,
) -> Result<(Response<()>, Exchange), Failed> {
    conn.uses += 1;
    let size = if body.is_end_stream() {
        BodySize::None
    } else {
        body.size_hint()
            .exact()
            .map_or(BodySize::Unknown, BodySize::Known)
    };
    let (head, framing) = encode::head(out, size);
    let mut written = 0;
    let wrote = poll_fn(|cx| {
        while written < head.len() {
            match ready!(Pin::new(&mut conn.io).poll_write(cx, &head[written..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => written += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    })
    .await;
    if let Err(e) = wrote {
        return Err(if written == 0 {
            Failed::Unsent(body)
        } else {
            Failed::Closed(e.to_string())
        });
    }
    let (left, trailers) = match framing {
        BodyFraming::Length(n) => (Some(n), Vec::new()),
        BodyFraming::Chunked { trailers } => (None, trailers),
    };
    let send = if left == Some(0) {
        Sending::Flush
    } else {
        Sending::Body(Box::new(BodySend {
            body,
            left,
            trailers,
            queue: Queue::default(),
            ended: false,
        }))
    };
    let mut ex = Exchange {
        conn,
        send,
        recv: Recv::Head,
        keep_alive: false,
        read_size: FIRST_READ,
    };
    let mut got_any = false;
    let head = poll_fn(|cx| ex.poll_head(cx, out.method, &mut got_any)).await?;
    ex.keep_alive = head.keep_alive;
    ex.recv = match head.framing {
        Framing::Empty => Recv::Done,
        Framing::Length(n) => Recv::Length(n),
        Framing::Chunked => Recv::Chunked(Chunked::Size),
        Framing::Close => Recv::Close,
    };
    Ok((head.response, ex))
}

// === impl Exchange ===

impl Exchange {
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        method: &Method,
        got_any: &mut bool,
    ) -> Poll<Result<decode::Head, Failed>> {
        self.poll_send(cx);
        if let Sending::Failed(SendError::Body(e)) = &self.send {
            return Poll::Ready(Err(Failed::Error(UpstreamError::Terminated(e.clone()))));
        }
        loop {
            match decode::head(&mut self.conn.buf, method) {
                Ok(Some(head)) => return Poll::Ready(Ok(head)),
                Ok(None) => {}
                Err(e) => {
                    return Poll::Ready(Err(Failed::Error(UpstreamError::Protocol(e.to_string()))))
                }
            }
            match ready!(self.poll_read(cx)) {
                Ok(0) if *got_any => {
                    return Poll::Ready(Err(Failed::Error(UpstreamError::Terminated(
                        "connection closed in the response head".into(),
                    ))))
                }
                Ok(0) => {
                    let detail = match &self.send {
                        Sending::Failed(SendError::Io(e)) => {
                            format!("connection closed before the response (writing: {e})")
                        }
                        _ => "connection closed before the response".into(),
                    };
                    return Poll::Ready(Err(Failed::Closed(detail)));
                }
                Ok(_) => *got_any = true,
                Err(e) if !*got_any && is_termination(&e) => {
                    return Poll::Ready(Err(Failed::Closed(e.to_string())))
                }
                Err(e) => {
                    return Poll::Ready(Err(Failed::Error(UpstreamError::Terminated(
                        e.to_string(),
                    ))))
                }
            }
        }
    }

    /// Reads more of the response into the buffer: `Ok(0)` at the end of the stream.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let buf = &mut self.conn.buf;
        if buf.capacity() == 0 {
            *buf = super::spare::take();
        }
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(self.read_size);
        }
        let asked = buf.capacity() - buf.len();
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.conn.io),
            cx,
            buf
        ))?;
        if n == asked && self.read_size < MAX_READ {
            self.read_size *= 2;
        }
        Poll::Ready(Ok(n))
    }

    /// Sends what it can of the request body (errors stop the sending and are kept in `send`).
    fn poll_send(&mut self, cx: &mut Context<'_>) {
        loop {
            match &mut self.send {
                Sending::Done | Sending::Failed(_) => return,
                Sending::Flush => match Pin::new(&mut self.conn.io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.send = Sending::Done,
                    Poll::Ready(Err(e)) => self.send = Sending::Failed(SendError::Io(e)),
                    Poll::Pending => return,
                },
                Sending::Body(send) => {
                    let BodySend {
                        body,
                        left,
                        trailers,
                        queue,
                        ended,
                    } = &mut **send;
                    if !queue.is_empty() {
                        match queue.poll_write(&mut self.conn.io, cx) {
                            Poll::Ready(Ok(())) => continue,
                            Poll::Ready(Err(e)) => {
                                self.send = Sending::Failed(SendError::Io(e));
                                continue;
                            }
                            Poll::Pending => return,
                        }
                    }
                    if *ended {
                        self.send = Sending::Flush;
                        continue;
                    }
                    let frame = match Pin::new(body).poll_frame(cx) {
                        Poll::Pending => {
                            // Waiting for the client: what was written goes out now.
                            if let Poll::Ready(Err(e)) = Pin::new(&mut self.conn.io).poll_flush(cx)
                            {
                                self.send = Sending::Failed(SendError::Io(e));
                            }
                            return;
                        }
                        Poll::Ready(f) => f,
                    };
                    match frame {
                        None => {
                            *ended = true;
                            match *left {
                                Some(0) => {}
                                Some(_) => {
                                    self.send = Sending::Failed(SendError::Body(
                                        "request body shorter than its content-length".into(),
                                    ));
                                }
                                None => queue.push(encode::last_chunk(None, trailers)),
                            }
                        }
                        Some(Err(e)) => {
                            self.send = Sending::Failed(SendError::Body(format!(
                                "request body failed: {e}"
                            )));
                        }
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) if data.is_empty() => {}
                            Ok(data) => match left {
                                Some(n) if data.len() as u64 > *n => {
                                    self.send = Sending::Failed(SendError::Body(
                                        "request body longer than its content-length".into(),
                                    ));
                                }
                                Some(n) => {
                                    *n -= data.len() as u64;
                                    queue.push(data);
                                }
                                None => {
                                    queue.push(encode::chunk_line(data.len()));
                                    queue.push(data);
                                    queue.push(Bytes::from_static(b"\r\n"));
                                }
                            },
                            Err(frame) => {
                                // Trailers end the body; a sized body sends none.
                                *ended = true;
                                if left.is_none() {
                                    queue.push(encode::last_chunk(frame.trailers_ref(), trailers));
                                }
                            }
                        },
                    }
                }
            }
        }
    }

    /// The next frame of the response body.
    pub fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.poll_send(cx);
        loop {
            let buf = &mut self.conn.buf;
            match &mut self.recv {
                Recv::Done | Recv::Failed | Recv::Head => return Poll::Ready(None),
                Recv::Length(0) => self.recv = Recv::Done,
                Recv::Length(left) if !buf.is_empty() => {
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    *left -= take as u64;
                    let data = buf.split_to(take).freeze();
                    if *left == 0 {
                        self.recv = Recv::Done;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Recv::Chunked(dec) => match dec.decode(buf) {
                    Ok(Some(Chunk::Data(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Some(Chunk::Trailers(t))) => {
                        // The last frame: the body has ended on the wire.
                        self.recv = Recv::Done;
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                    Ok(Some(Chunk::End)) => self.recv = Recv::Done,
                    Ok(None) => {
                        if let Err(e) = ready!(self.poll_more(cx)) {
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                    Err(e) => {
                        self.recv = Recv::Failed;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
                Recv::Close if !buf.is_empty() => {
                    return Poll::Ready(Some(Ok(Frame::data(buf.split().freeze()))));
                }
                Recv::Close => match ready!(self.poll_read(cx)) {
                    Ok(0) => self.recv = Recv::Done,
                    Ok(_) => {}
                    Err(e) => {
                        self.recv = Recv::Failed;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
                Recv::Length(_) => {
                    if let Err(e) = ready!(self.poll_more(cx)) {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
        }
    }

    /// Reads more of a body that must not end yet.
    fn poll_more(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let failed = match ready!(self.poll_read(cx)) {
            Ok(0) => "upstream closed the connection before the response body ended".to_owned(),
            Ok(_) => return Poll::Ready(Ok(())),
            Err(e) => format!("reading the response body: {e}"),
        };
        self.recv = Recv::Failed;
        Poll::Ready(Err(failed.into()))
    }

    pub fn is_end_stream(&self) -> bool {
        matches!(self.recv, Recv::Done | Recv::Length(0))
    }

    pub fn size_hint(&self) -> SizeHint {
        match self.recv {
            Recv::Done | Recv::Failed | Recv::Head => SizeHint::with_exact(0),
            Recv::Length(n) => SizeHint::with_exact(n),
            Recv::Chunked(_) | Recv::Close => SizeHint::default(),
        }
    }

    /// The connection, if the response has been read to its end and it can carry another
    /// request: keep-alive, the request all sent, nothing unasked in the buffer.
    pub fn finish(self) -> Option<Conn> {
        let done = matches!(self.recv, Recv::Done | Recv::Length(0));
        if !(done && self.keep_alive && matches!(self.send, Sending::Done)) {
            return None;
        }
        let mut conn = self.conn;
        if !conn.buf.is_empty() {
            return None;
        }
        // An idle connection holds no buffer: its memory goes to the thread's spares (the
        // body's last bytes may still share it).
        super::spare::put(std::mem::take(&mut conn.buf));
        Some(conn)
    }
}

/// The connection ended (closed or reset): the keep-alive race, not a malformed response.
fn is_termination(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
    )
}

// === impl Queue ===

impl Queue {
    fn is_empty(&self) -> bool {
        self.parts.iter().all(Bytes::is_empty)
    }

    /// Queues `b` after what is queued (the queue holds one chunk's three parts at most; it is
    /// empty whenever a frame is taken from the body).
    fn push(&mut self, b: Bytes) {
        let used = self
            .parts
            .iter()
            .rposition(|p| !p.is_empty())
            .map_or(0, |i| i + 1);
        debug_assert!(used < self.parts.len(), "queue overflow");
        if let Some(slot) = self.parts.get_mut(used) {
            *slot = b;
        }
    }

    fn poll_write(&mut self, io: &mut Stream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let slices = [
                IoSlice::new(&self.parts[0]),
                IoSlice::new(&self.parts[1]),
                IoSlice::new(&self.parts[2]),
            ];
            let mut n = match ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => n,
                Err(e) => return Poll::Ready(Err(e)),
            };
            for part in &mut self.parts {
                let k = n.min(part.len());
                part.advance(k);
                n -= k;
            }
        }
        Poll::Ready(Ok(()))
    }
}
