//! Which HTTP a downstream connection speaks, and hyper's connection for it.
//!
//! TLS connections say it in ALPN; plain ones are sniffed by peeking at the first bytes (HTTP/2
//! with prior knowledge starts with the connection preface), so hyper's HTTP/1 or HTTP/2
//! connection is built directly. hyper-util's auto connection, which reads the first 24 bytes
//! itself and hands them back through a rewind buffer, is left for what cannot be told apart
//! (TLS without ALPN, a client that sent only part of a preface-like prefix): its rewind makes
//! hyper's first read return only those bytes, which doubles every connection's read buffer to
//! 16 KiB (`benches/RESULTS.md`, per-connection memory).
//! May not touch: requests (the service does), timeouts and draining (the listener does).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use super::Body;

/// HTTP/2's connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection speaks, as far as it can be known before hyper reads from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
    /// Not known yet: hyper-util reads the first bytes and decides.
    Sniff,
}

impl Proto {
    /// From the protocol a TLS handshake negotiated by ALPN.
    pub fn from_alpn(alpn: Option<&[u8]>) -> Proto {
        match alpn {
            Some(b"h2") => Proto::Http2,
            Some(b"http/1.1") => Proto::Http1,
            _ => Proto::Sniff,
        }
    }

    /// From the first bytes a plain connection sent: the preface, or a strict beginning of it
    /// (which more bytes may still complete), or anything else.
    pub fn from_first_bytes(first: &[u8]) -> Proto {
        let n = first.len().min(PREFACE.len());
        if first[..n] != PREFACE[..n] {
            Proto::Http1
        } else if n == PREFACE.len() {
            Proto::Http2
        } else {
            Proto::Sniff
        }
    }
}

/// Waits for a plain connection's first bytes and tells its protocol from them, without
/// consuming them. `None`: the client closed (or the socket failed) before sending any.
pub async fn sniff(tcp: &TcpStream) -> Option<Proto> {
    let mut first = [0u8; PREFACE.len()];
    match tcp.peek(&mut first).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(Proto::from_first_bytes(&first[..n])),
    }
}

/// The hyper builders a listener serves with, configured once.
pub struct Builders {
    pub http1: http1::Builder,
    pub http2: http2::Builder<TokioExecutor>,
    /// The same settings, for connections whose protocol is not known in advance.
    pub auto: auto::Builder<TokioExecutor>,
}

type H1<I, S> = http1::UpgradeableConnection<I, S>;
type H2<I, S> = http2::Connection<I, S, TokioExecutor>;
type Auto<'b, I, S> = auto::UpgradeableConnection<'b, I, S, TokioExecutor>;

/// One downstream connection being served. Each kind is boxed on its own, so a connection holds
/// the state of its protocol only.
pub enum HttpConn<'b, I, S>
where
    S: Service<http::Request<Incoming>, Response = http::Response<Body>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Http1(Pin<Box<H1<I, S>>>),
    Http2(Pin<Box<H2<I, S>>>),
    Sniff(Pin<Box<Auto<'b, I, S>>>),
}

impl<'b, I, S> HttpConn<'b, I, S>
where
    I: Read + Write + Unpin + Send + 'static,
    S: Service<http::Request<Incoming>, Response = http::Response<Body>> + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new(builders: &'b Builders, proto: Proto, io: I, service: S) -> Self {
        match proto {
            Proto::Http1 => HttpConn::Http1(Box::pin(
                builders.http1.serve_connection(io, service).with_upgrades(),
            )),
            Proto::Http2 => HttpConn::Http2(Box::pin(builders.http2.serve_connection(io, service))),
            Proto::Sniff => HttpConn::Sniff(Box::pin(
                builders.auto.serve_connection_with_upgrades(io, service),
            )),
        }
    }

    /// HTTP/2: GOAWAY, then the streams in flight finish. HTTP/1: closes once idle.
    pub fn graceful_shutdown(&mut self) {
        match self {
            HttpConn::Http1(c) => c.as_mut().graceful_shutdown(),
            HttpConn::Http2(c) => c.as_mut().graceful_shutdown(),
            HttpConn::Sniff(c) => c.as_mut().graceful_shutdown(),
        }
    }
}

impl<I, S> Future for HttpConn<'_, I, S>
where
    I: Read + Write + Unpin + Send + 'static,
    S: Service<http::Request<Incoming>, Response = http::Response<Body>> + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            HttpConn::Http1(c) => c.as_mut().poll(cx).map_err(Into::into),
            HttpConn::Http2(c) => c.as_mut().poll(cx).map_err(Into::into),
            HttpConn::Sniff(c) => c.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_tell_the_protocol() {
        assert_eq!(Proto::from_first_bytes(PREFACE), Proto::Http2);
        assert_eq!(
            Proto::from_first_bytes(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04"),
            Proto::Http2
        );
        assert_eq!(Proto::from_first_bytes(b"GET / HTTP/1.1\r\n"), Proto::Http1);
        assert_eq!(Proto::from_first_bytes(b"PUT"), Proto::Http1);
        assert_eq!(Proto::from_first_bytes(b"PRI * HTTP/1.1"), Proto::Http1);
        // A beginning of the preface: more bytes decide.
        assert_eq!(Proto::from_first_bytes(b"P"), Proto::Sniff);
        assert_eq!(Proto::from_first_bytes(b"PRI * HTTP/2"), Proto::Sniff);
    }

    #[test]
    fn alpn_tells_the_protocol() {
        assert_eq!(Proto::from_alpn(Some(b"h2")), Proto::Http2);
        assert_eq!(Proto::from_alpn(Some(b"http/1.1")), Proto::Http1);
        assert_eq!(Proto::from_alpn(None), Proto::Sniff);
        assert_eq!(Proto::from_alpn(Some(b"istio")), Proto::Sniff);
    }
}
