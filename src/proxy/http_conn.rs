//! Which HTTP a downstream connection speaks, and the server for it: meshgate's own for HTTP/1
//! (`h1_server.rs`, with hyper's for the rest of a connection that needs it), hyper's for HTTP/2.
//!
//! A TLS connection says it in ALPN; otherwise the first bytes are read until they tell (HTTP/2
//! with prior knowledge starts with the connection preface) and handed back to the server in front
//! of the stream (`Prefixed`), together with the first read from the socket, so the server's first
//! read holds the whole request head as it would without the sniffing (`benches/RESULTS.md`).
//! An idle HTTP/1 connection can be parked: the server lets go of it (its buffers are freed) and
//! the stream and service wait in `Parked` until the next request's first bytes, which are put
//! back in front for a new server, as sniffed bytes are.
//! May not touch: requests (the service does), timeouts and draining (the listener does).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::conn_service::{ConnServe, ConnStream};
use super::h1_server::{self, Outcome};
use super::BoxError;

/// How many bytes a parked connection reads to learn that its next request has begun.
pub const PARKED_READ: usize = 64;

/// HTTP/2's connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

impl Proto {
    /// From the protocol a TLS handshake negotiated by ALPN, if it did.
    pub fn from_alpn(alpn: Option<&[u8]>) -> Option<Proto> {
        match alpn {
            Some(b"h2") => Some(Proto::Http2),
            Some(b"http/1.1") => Some(Proto::Http1),
            _ => None,
        }
    }

    /// From a connection's first bytes: the preface, anything else, or `None` for a strict
    /// beginning of the preface (more bytes decide).
    pub fn from_first_bytes(first: &[u8]) -> Option<Proto> {
        let n = first.len().min(PREFACE.len());
        if first[..n] != PREFACE[..n] {
            Some(Proto::Http1)
        } else if n == PREFACE.len() {
            Some(Proto::Http2)
        } else {
            None
        }
    }
}

/// Reads a connection's first bytes until they tell its protocol (at most the preface's 24).
/// `None`: the client closed (or the socket failed) first.
pub async fn sniff<T: AsyncRead + Unpin>(io: &mut T) -> Option<(Proto, Bytes)> {
    let mut first = [0u8; PREFACE.len()];
    let mut filled = 0;
    loop {
        match io.read(&mut first[filled..]).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => filled += n,
        }
        if let Some(proto) = Proto::from_first_bytes(&first[..filled]) {
            return Some((proto, Bytes::copy_from_slice(&first[..filled])));
        }
    }
}

/// A stream with bytes already read from it put back in front.
pub struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Prefixed<T> {
    pub fn new(inner: T, prefix: Bytes) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<T> Prefixed<T> {
    /// Puts `first` back in front of whatever is still waiting to be read again.
    pub(super) fn put_back(&mut self, first: &[u8]) {
        self.prefix = if self.prefix.is_empty() {
            Bytes::copy_from_slice(first)
        } else {
            let mut joined = bytes::BytesMut::with_capacity(first.len() + self.prefix.len());
            joined.extend_from_slice(first);
            joined.extend_from_slice(&self.prefix);
            joined.freeze()
        };
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        if self.prefix.is_empty() {
            // Frees the sniffed bytes' buffer (an emptied `Bytes` still holds it).
            self.prefix = Bytes::new();
            // What else has arrived, in the same read. Pending: the waker is registered, the
            // prefix is returned now; an error or the end shows on the next read as well.
            if buf.remaining() > 0 {
                let _ = Pin::new(&mut self.inner).poll_read(cx, buf);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The hyper builders a listener serves with, configured once, and whether HTTP/1 requests are
/// served by meshgate's own server where they can be (`h1_server.rs`; `MESHGATE_HTTP1_SERVER=hyper`
/// hands every HTTP/1 connection to hyper's).
pub struct Builders {
    pub http1: http1::Builder,
    pub http2: http2::Builder<TokioExecutor>,
    pub own_http1: bool,
}

type H2<T, S> = http2::Connection<TokioIo<Prefixed<T>>, S, TokioExecutor>;

/// One downstream connection being served.
pub enum HttpConn<T, S>
where
    T: ConnStream,
    S: ConnServe,
{
    /// meshgate's own server, hyper's for the rest of the connection when a request needs it.
    Http1(Own<T, S>),
    /// Boxed: a connection holds the state of its protocol only.
    Http2(Pin<Box<H2<T, S>>>),
}

/// An HTTP/1 connection served by `h1_server::serve`.
pub struct Own<T, S> {
    serving: Pin<Box<dyn Future<Output = Outcome<T, S>> + Send>>,
    /// Set to end the connection gracefully (read by the serving future when polled).
    shutdown: Arc<AtomicBool>,
    /// The stream and service once serving ended with the stream open. Boxed: a connection, and
    /// every future that holds one, would otherwise keep room for them while serving.
    ended: Option<Box<(Prefixed<T>, S)>>,
}

impl<T, S> HttpConn<T, S>
where
    T: ConnStream,
    S: ConnServe,
{
    pub fn new(builders: &Arc<Builders>, proto: Proto, io: Prefixed<T>, service: S) -> Self {
        match proto {
            Proto::Http1 => {
                let shutdown = Arc::new(AtomicBool::new(false));
                HttpConn::Http1(Own {
                    serving: Box::pin(h1_server::serve(
                        io,
                        service,
                        builders.clone(),
                        shutdown.clone(),
                    )),
                    shutdown,
                    ended: None,
                })
            }
            Proto::Http2 => HttpConn::Http2(Box::pin(
                builders.http2.serve_connection(TokioIo::new(io), service),
            )),
        }
    }

    /// Whether the connection can be parked when quiet (HTTP/1 can).
    pub fn can_park(&self) -> bool {
        matches!(self, HttpConn::Http1(_))
    }

    /// HTTP/2: GOAWAY, then the streams in flight finish. HTTP/1: closes once idle (after the
    /// response under way, if any), the stream handed back (`into_parked`).
    pub fn graceful_shutdown(&mut self) {
        match self {
            HttpConn::Http1(c) => c.shutdown.store(true, Ordering::Relaxed),
            HttpConn::Http2(c) => c.as_mut().graceful_shutdown(),
        }
    }

    /// An HTTP/1 connection that ended after `graceful_shutdown` with its stream left open (the
    /// listener passes over the shutdown of the stream while parking): the stream and service
    /// back. `None` for HTTP/2, or a connection closed or upgraded.
    pub fn into_parked(self) -> Option<Parked<T, S>> {
        match self {
            HttpConn::Http1(c) => c.ended.map(|ended| {
                let (io, service) = *ended;
                Parked { io, service }
            }),
            HttpConn::Http2(_) => None,
        }
    }
}

/// A parked HTTP/1 connection: the stream (with any bytes read but not used in front) and the
/// service, without a server's state and buffers.
pub struct Parked<T, S> {
    io: Prefixed<T>,
    service: S,
}

impl<T, S> Parked<T, S>
where
    T: ConnStream,
    S: ConnServe,
{
    /// Reads the first bytes of what comes next (0: the client closed).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.read(buf).await
    }

    /// A new connection for the request whose `first` bytes `read` returned.
    pub fn resume(mut self, builders: &Arc<Builders>, first: &[u8]) -> HttpConn<T, S> {
        self.io.put_back(first);
        HttpConn::new(builders, Proto::Http1, self.io, self.service)
    }
}

impl<T, S> Future for HttpConn<T, S>
where
    T: ConnStream,
    S: ConnServe,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            HttpConn::Http1(c) => {
                if c.ended.is_some() {
                    return Poll::Ready(Ok(()));
                }
                match c.serving.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Outcome::Ended { io, service }) => {
                        c.ended = Some(Box::new((io, service)));
                        Poll::Ready(Ok(()))
                    }
                    Poll::Ready(Outcome::Closed(res)) => Poll::Ready(res),
                }
            }
            HttpConn::Http2(c) => c.as_mut().poll(cx).map_err(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn the_first_bytes_tell_the_protocol() {
        assert_eq!(Proto::from_first_bytes(PREFACE), Some(Proto::Http2));
        assert_eq!(
            Proto::from_first_bytes(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04"),
            Some(Proto::Http2)
        );
        assert_eq!(
            Proto::from_first_bytes(b"GET / HTTP/1.1\r\n"),
            Some(Proto::Http1)
        );
        assert_eq!(Proto::from_first_bytes(b"PUT"), Some(Proto::Http1));
        assert_eq!(
            Proto::from_first_bytes(b"PRI * HTTP/1.1"),
            Some(Proto::Http1)
        );
        // A beginning of the preface: more bytes decide.
        assert_eq!(Proto::from_first_bytes(b"P"), None);
        assert_eq!(Proto::from_first_bytes(b"PRI * HTTP/2"), None);
    }

    #[test]
    fn alpn_tells_the_protocol() {
        assert_eq!(Proto::from_alpn(Some(b"h2")), Some(Proto::Http2));
        assert_eq!(Proto::from_alpn(Some(b"http/1.1")), Some(Proto::Http1));
        assert_eq!(Proto::from_alpn(None), None);
        assert_eq!(Proto::from_alpn(Some(b"istio")), None);
    }

    /// The sniffed bytes come back first, together with what followed them, in one read.
    #[tokio::test]
    async fn sniffed_bytes_come_back_in_front_with_the_rest() {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"P").await.unwrap();
        let mut server = server;
        let sniff_task = tokio::spawn(async move {
            let sniffed = sniff(&mut server).await;
            (sniffed, server)
        });
        client.write_all(b"OST /x HTTP/1.1\r\n\r\n").await.unwrap();
        let (sniffed, server) = sniff_task.await.unwrap();
        let (proto, first) = sniffed.unwrap();
        assert_eq!(proto, Proto::Http1);
        assert!(b"POST /x HTTP/1.1\r\n\r\n".starts_with(&first), "{first:?}");
        let mut io = Prefixed::new(server, first);
        let mut buf = [0u8; 64];
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"POST /x HTTP/1.1\r\n\r\n");
        drop(client);
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_client_that_closes_before_telling_is_none() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"PRI * HT").await.unwrap();
        drop(client);
        assert!(sniff(&mut server).await.is_none());
    }
}
