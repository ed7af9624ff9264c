//! meshgate's own HTTP/1.1 server for the common request, hyper's for the rest of a connection.
//!
//! A `GET` with no body, no `Expect`, no `Upgrade` and no `Connection` other than `keep-alive`
//! (what load balancers' health checks, browsers' page loads and `wrk` send) is read, handed to
//! the service and answered here: one read buffer per connection whose bytes the request's values
//! share (no copy), the last response's header map reused for the next request, the response
//! head and a body that is ready written in one go. Anything else
//! (a body, `HEAD`, HTTP/1.0, an upgrade, a head hyper would reject, one over 8 KiB) hands the
//! connection, with every byte read so far, to hyper's server for the rest of its life: its
//! framing, limits, error replies and upgrades apply unchanged.
//!
//! As hyper's server does: a response without `content-length` gets one when its body's size is
//! known, else `transfer-encoding: chunked`; a `date` header is added; 204 and 304 responses have
//! no body; the client closing while its request is served cancels the request; a graceful
//! shutdown closes an idle connection at once and a busy one after its response
//! (`connection: close`), handing the stream back for parking.
//! May not touch: routing, timeouts and draining (`connection.rs`, `conn_state.rs`).

use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use smallvec::SmallVec;
use tokio::io::AsyncWriteExt;
use tokio_util::io::poll_read_buf;

use super::conn_service::{ConnServe, ConnStream, ServiceFuture};
use super::http_conn::{Builders, Prefixed};
use super::request_body::RequestBody;
use super::service::MAX_HEADERS;
use super::{Body, BoxError};

/// A request head not complete within this many bytes goes to hyper (its limits, its 431).
const MAX_OWN_HEAD: usize = 8 * 1024;
/// Room made in the read buffer before a read.
const READ_ROOM: usize = 4 * 1024;
/// Response bytes gathered before a write; larger data frames are written as they are.
const WRITE_BATCH: usize = 16 * 1024;

/// How a connection served here ended.
pub(super) enum Outcome<T, S> {
    /// The stream is still open: the client closed between requests, or a graceful shutdown
    /// (the stream was shut down, which `TimedIo` passes over while parking).
    Ended { io: Prefixed<T>, service: S },
    /// Closed, or broken off.
    Closed(Result<(), BoxError>),
}

/// A request head read off the wire, or what to do instead. Returned, never kept: boxing the
/// request would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    /// The request (its head taken off the buffer).
    Request(Request<RequestBody>),
    /// The head is not complete yet.
    Partial,
    /// Not a request served here: hyper takes the connection.
    Hyper,
}

/// Serves one HTTP/1 connection until it closes or a graceful shutdown (`shutdown` set, then
/// the future polled) ends it.
pub(super) async fn serve<T, S>(
    mut io: Prefixed<T>,
    service: S,
    builders: Arc<Builders>,
    shutdown: Arc<AtomicBool>,
) -> Outcome<T, S>
where
    T: ConnStream,
    S: ConnServe,
{
    let mut buf = BytesMut::new();
    let mut out: Vec<u8> = Vec::new();
    // The last response's header map, cleared: the next request's (as hyper's server does).
    let mut spare: Option<HeaderMap> = None;
    if !builders.own_http1 {
        return hyper_rest_boxed(io, buf, service, builders, shutdown).await;
    }
    loop {
        // The next request's head.
        let req = loop {
            if !buf.is_empty() {
                match parse(&mut buf, &mut spare) {
                    Parsed::Request(req) => break req,
                    Parsed::Partial => {}
                    Parsed::Hyper => {
                        return hyper_rest_boxed(io, buf, service, builders, shutdown).await
                    }
                }
            }
            match read_more(&mut io, &mut buf, &shutdown).await {
                Read::Data => {}
                // Between requests (or inside a head: hyper reports that one, we close it too).
                Read::Eof => return Outcome::Ended { io, service },
                Read::Shutdown => {
                    // Bytes of a next request go back in front, for a parked connection.
                    io.put_back(&buf);
                    let _ = io.shutdown().await;
                    return Outcome::Ended { io, service };
                }
                Read::Failed(e) => return Outcome::Closed(Err(e.into())),
            }
        };
        let mut fut = service.serve_own(req);
        let Some(resp) = until_response(&mut fut, &mut io, &mut buf).await else {
            // The client closed while its request was served: the request is cancelled.
            drop(fut);
            return Outcome::Closed(Err("client closed the connection mid-request".into()));
        };
        drop(fut);
        let close = shutdown.load(Ordering::Relaxed);
        match write_response(&mut io, &mut out, resp, close, &mut spare).await {
            Ok(true) => {}
            Ok(false) => {
                let _ = io.shutdown().await;
                return Outcome::Ended { io, service };
            }
            Err(e) => return Outcome::Closed(Err(e)),
        }
        if out.capacity() > 4 * WRITE_BATCH {
            out = Vec::new();
        }
    }
}

/// `hyper_rest`, boxed outside of an async fn: `serve`'s state keeps no room for hyper's
/// connection (built on the stack of an async fn, a future takes room in its state).
fn hyper_rest_boxed<T, S>(
    io: Prefixed<T>,
    buf: BytesMut,
    service: S,
    builders: Arc<Builders>,
    shutdown: Arc<AtomicBool>,
) -> Pin<Box<dyn Future<Output = Outcome<T, S>> + Send>>
where
    T: ConnStream,
    S: ConnServe,
{
    Box::pin(hyper_rest(io, buf, service, builders, shutdown))
}

/// hyper's connection for the rest of a stream, boxed outside of an async fn.
fn hyper_conn<T, S>(
    http1: &http1::Builder,
    io: Prefixed<T>,
    service: S,
) -> Pin<Box<http1::UpgradeableConnection<TokioIo<Prefixed<T>>, S>>>
where
    T: ConnStream,
    S: ConnServe,
{
    Box::pin(
        http1
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades(),
    )
}

/// The rest of a connection, served by hyper: `buf` (bytes read but not used) goes in front.
async fn hyper_rest<T, S>(
    mut io: Prefixed<T>,
    buf: BytesMut,
    service: S,
    builders: Arc<Builders>,
    shutdown: Arc<AtomicBool>,
) -> Outcome<T, S>
where
    T: ConnStream,
    S: ConnServe,
{
    if !buf.is_empty() {
        io.put_back(&buf);
    }
    drop(buf);
    let mut conn = hyper_conn(&builders.http1, io, service);
    let mut asked = false;
    let res = poll_fn(|cx| {
        if !asked && shutdown.load(Ordering::Relaxed) {
            asked = true;
            conn.as_mut().graceful_shutdown();
        }
        conn.as_mut().poll(cx)
    })
    .await;
    if asked && res.is_ok() {
        if let Some(parts) = Pin::into_inner(conn).into_parts() {
            let mut io = parts.io.into_inner();
            io.put_back(&parts.read_buf);
            return Outcome::Ended {
                io,
                service: parts.service,
            };
        }
        return Outcome::Closed(Ok(()));
    }
    Outcome::Closed(res.map_err(Into::into))
}

/// What a read for a request head found.
enum Read {
    Data,
    Eof,
    Shutdown,
    Failed(io::Error),
}

/// Reads more of a request head; a graceful shutdown ends the wait.
async fn read_more<T: ConnStream>(
    io: &mut Prefixed<T>,
    buf: &mut BytesMut,
    shutdown: &AtomicBool,
) -> Read {
    buf.reserve(READ_ROOM);
    poll_fn(|cx| {
        if shutdown.load(Ordering::Relaxed) {
            return Poll::Ready(Read::Shutdown);
        }
        match poll_read_buf(Pin::new(&mut *io), cx, buf) {
            Poll::Ready(Ok(0)) => Poll::Ready(Read::Eof),
            Poll::Ready(Ok(_)) => Poll::Ready(Read::Data),
            Poll::Ready(Err(e)) => Poll::Ready(Read::Failed(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Waits for the service's response while watching the client: `None` if it closed first. As
/// hyper does, the client is watched only while nothing of a next request is buffered.
async fn until_response<T: ConnStream>(
    fut: &mut ServiceFuture,
    io: &mut Prefixed<T>,
    buf: &mut BytesMut,
) -> Option<Response<Body>> {
    let mut watch = buf.is_empty();
    poll_fn(|cx| {
        if let Poll::Ready(res) = fut.as_mut().poll(cx) {
            let Ok(resp) = res;
            return Poll::Ready(Some(resp));
        }
        if watch {
            if buf.capacity() == buf.len() {
                buf.reserve(64);
            }
            match poll_read_buf(Pin::new(&mut *io), cx, buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(None),
                // A next request, pipelined: served after this one.
                Poll::Ready(Ok(_)) => watch = false,
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

/// Parses the request head at the front of `buf` and, for a request served here, takes it off
/// (the head's bytes are shared with the request's values, not copied: by the next read the
/// request is done and they are dropped, so the buffer is reused in place). `spare`: a header map
/// to reuse (the last response's, cleared).
fn parse(buf: &mut BytesMut, spare: &mut Option<HeaderMap>) -> Parsed {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_OWN_HEAD => return Parsed::Partial,
        Ok(httparse::Status::Partial) | Err(_) => return Parsed::Hyper,
    };
    if req.version != Some(1) || req.method != Some("GET") {
        return Parsed::Hyper;
    }
    let Some(path) = req.path.filter(|p| p.starts_with('/')) else {
        return Parsed::Hyper;
    };
    if !req.headers.iter().all(served_here) {
        return Parsed::Hyper;
    }
    let base = buf.as_ptr() as usize;
    let range = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let path = range(path.as_bytes());
    // Not an array of `MAX_HEADERS`: that would be zeroed (3.2 KB) for every request.
    let spans: SmallVec<[(Range<usize>, Range<usize>); 24]> = req
        .headers
        .iter()
        .map(|h| (range(h.name.as_bytes()), range(h.value)))
        .collect();
    let count = spans.len();
    let head = buf.split_to(len).freeze();
    let mut headers = match spare.take() {
        Some(map) if map.capacity() >= count => map,
        _ => HeaderMap::with_capacity(count + 4),
    };
    let Ok(uri) = Uri::from_maybe_shared(head.slice(path)) else {
        return give_back(buf, &head);
    };
    for (name, value) in &spans {
        // httparse checked both (a token, visible bytes), so neither fails; if one did, hyper
        // would answer the head.
        let Ok(name) = HeaderName::from_bytes(&head[name.clone()]) else {
            return give_back(buf, &head);
        };
        let Ok(value) = HeaderValue::from_maybe_shared(head.slice(value.clone())) else {
            return give_back(buf, &head);
        };
        headers.append(name, value);
    }
    let mut request = Request::new(RequestBody::Empty);
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Parsed::Request(request)
}

/// Whether a request with this header can be served here: not with a body's framing, an
/// upgrade, an expectation, or a `Connection` other than `keep-alive`.
fn served_here(h: &httparse::Header<'_>) -> bool {
    let name = h.name.as_bytes();
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    if is(b"connection") {
        return h.value.trim_ascii().eq_ignore_ascii_case(b"keep-alive");
    }
    !(is(b"content-length") || is(b"transfer-encoding") || is(b"upgrade") || is(b"expect"))
}

/// Puts a head taken off `buf` back in front of it, for hyper.
fn give_back(buf: &mut BytesMut, head: &Bytes) -> Parsed {
    let mut joined = BytesMut::with_capacity(head.len() + buf.len());
    joined.extend_from_slice(head);
    joined.extend_from_slice(buf);
    *buf = joined;
    Parsed::Hyper
}

/// How a response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// An unreadable `content-length`: the body, then the connection closes.
    Close,
}

/// Writes `resp`; `Ok(true)` if the connection can carry another request. `closing`: a graceful
/// shutdown was asked for (the response then says `connection: close`).
async fn write_response<T: ConnStream>(
    io: &mut Prefixed<T>,
    out: &mut Vec<u8>,
    resp: Response<Body>,
    closing: bool,
    spare: &mut Option<HeaderMap>,
) -> Result<bool, BoxError> {
    let (mut parts, mut body) = resp.into_parts();
    let framing = framing(parts.status, &parts.headers, body.size_hint().exact());
    out.clear();
    let close = encode_head(out, &parts, framing, closing);
    parts.headers.clear();
    *spare = Some(parts.headers);
    let mut keep = !close && framing != Framing::Close;
    if framing == Framing::None {
        io.write_all(out).await?;
        return Ok(keep);
    }
    let mut sent = 0u64;
    loop {
        // A frame that is ready joins what is gathered; otherwise what is gathered goes first.
        let frame = match futures_util::FutureExt::now_or_never(body.frame()) {
            Some(frame) => frame,
            None => {
                if !out.is_empty() {
                    io.write_all(out).await?;
                    out.clear();
                }
                body.frame().await
            }
        };
        let Some(frame) = frame else { break };
        let Ok(mut data) = frame?.into_data() else {
            // Trailers: not sent (hyper sends them only to a client that asked, with `te`).
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let mut overflow = false;
        if let Framing::Length(n) = framing {
            // More than the head said (a route that set `content-length`, say): only what it
            // said is sent, then the connection closes; a byte more would be read as the start
            // of the next response.
            let room = n.saturating_sub(sent);
            if data.len() as u64 > room {
                data.truncate(usize::try_from(room).unwrap_or(usize::MAX));
                overflow = true;
            }
        }
        sent += data.len() as u64;
        if framing == Framing::Chunked {
            push_chunk_size(out, data.len());
        }
        if data.len() > WRITE_BATCH {
            io.write_all(out).await?;
            out.clear();
            io.write_all(&data).await?;
        } else {
            out.extend_from_slice(&data);
        }
        if framing == Framing::Chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= WRITE_BATCH {
            io.write_all(out).await?;
            out.clear();
        }
        if overflow {
            keep = false;
            break;
        }
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if let Framing::Length(n) = framing {
        // A body shorter or longer than it said: the client cannot find the next response.
        keep &= sent == n;
    }
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(keep)
}

/// How a response body is framed (RFC 9112 §6.3), as hyper's server decides it: none for 1xx,
/// 204 and 304; a `content-length` given is kept; else the body's known size, or chunked.
fn framing(status: StatusCode, headers: &HeaderMap, exact: Option<u64>) -> Framing {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Framing::None;
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        let parsed = std::str::from_utf8(first.as_bytes())
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok());
        return match parsed {
            Some(n) if lengths.all(|v| v == first) => Framing::Length(n),
            _ => Framing::Close,
        };
    }
    match exact {
        Some(n) => Framing::Length(n),
        None => Framing::Chunked,
    }
}

/// The status line and headers; the framing header, `date` and `connection: close` added as
/// hyper adds them. Whether the head says `connection: close` (the connection then closes).
fn encode_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    framing: Framing,
    closing: bool,
) -> bool {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("<none>")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    let mut has_date = false;
    let mut has_close = false;
    for (name, value) in &parts.headers {
        if name == header::DATE {
            has_date = true;
        } else if name == header::CONNECTION {
            has_close |= has_token(value.as_bytes(), b"close");
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) if !parts.headers.contains_key(header::CONTENT_LENGTH) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        crate::telemetry::text::push_http_date(out);
        out.extend_from_slice(b"\r\n");
    }
    if closing && !has_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    closing || has_close
}

/// A chunk's size line.
fn push_chunk_size(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    crate::telemetry::text::hex_into(&mut digits, len as u128);
    let first = digits.iter().position(|d| *d != b'0').unwrap_or(15);
    out.extend_from_slice(&digits[first..]);
    out.extend_from_slice(b"\r\n");
}

/// Does a comma-separated header value hold `token` (any case)?
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request parsed off `text`, and what is left of the buffer.
    fn parsed(text: &str) -> Option<(Request<RequestBody>, BytesMut)> {
        let mut buf = BytesMut::from(text);
        match parse(&mut buf, &mut None) {
            Parsed::Request(r) => Some((r, buf)),
            _ => None,
        }
    }

    fn kind(text: &[u8]) -> &'static str {
        let mut buf = BytesMut::from(text);
        let kind = match parse(&mut buf, &mut None) {
            Parsed::Request(_) => "request",
            Parsed::Partial => "partial",
            Parsed::Hyper => "hyper",
        };
        // Not served here: every byte is still there, for hyper.
        if kind != "request" {
            assert_eq!(buf, text);
        }
        kind
    }

    #[test]
    fn a_plain_get_is_served_here() {
        let text = "GET /a?b=1 HTTP/1.1\r\nHost: x.test\r\nConnection: keep-alive\r\nX-A: 1\r\nx-a: 2\r\n\r\nGET /next";
        let (req, rest) = parsed(text).unwrap();
        assert_eq!(rest, "GET /next");
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri(), "/a?b=1");
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()["host"], "x.test");
        let xa: Vec<_> = req.headers().get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
        assert!(matches!(req.body(), RequestBody::Empty));
    }

    /// More headers than the spans kept inline (24), up to the limit: all arrive (the count, the
    /// first and the last checked).
    #[test]
    fn many_headers_all_arrive() {
        let mut text = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..MAX_HEADERS - 1 {
            text.push_str(&format!("x-h{i}: v{i}\r\n"));
        }
        text.push_str("\r\n");
        let (req, rest) = parsed(&text).unwrap();
        assert!(rest.is_empty());
        assert_eq!(req.headers().len(), MAX_HEADERS);
        assert_eq!(req.headers()["x-h0"], "v0");
        assert_eq!(req.headers()["x-h98"], "v98");
    }

    #[test]
    fn anything_else_goes_to_hyper() {
        for text in [
            "POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 1\r\n\r\na",
            "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GARBAGE\r\n\r\n",
        ] {
            assert_eq!(kind(text.as_bytes()), "hyper", "{text:?}");
        }
        // Incomplete: more bytes are read, up to a limit.
        assert_eq!(kind(b"GET / HTTP/1.1\r\nHost: x\r\n"), "partial");
        let long = format!("GET / HTTP/1.1\r\nx-long: {}\r\n", "a".repeat(MAX_OWN_HEAD));
        assert_eq!(kind(long.as_bytes()), "hyper");
    }

    /// A map handed back from the last response is reused, emptied.
    #[test]
    fn the_spare_map_is_reused() {
        let mut spare = HeaderMap::with_capacity(30);
        spare.insert("x-old", HeaderValue::from_static("1"));
        spare.clear();
        let mut spare = Some(spare);
        let mut buf = BytesMut::from("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let Parsed::Request(req) = parse(&mut buf, &mut spare) else {
            panic!("not parsed");
        };
        assert!(spare.is_none());
        assert!(req.headers().capacity() >= 30);
        assert_eq!(req.headers().len(), 1);
        assert!(buf.is_empty());
    }

    fn head(status: u16, headers: &[(&str, &str)], framing: Framing, closing: bool) -> String {
        let mut resp = Response::new(());
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        for (n, v) in headers {
            resp.headers_mut().append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let (parts, ()) = resp.into_parts();
        let mut out = Vec::new();
        let _ = encode_head(&mut out, &parts, framing, closing);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn response_heads_get_framing_date_and_close_as_from_hyper() {
        // status, headers, framing, closing: the head written.
        type Case = (
            u16,
            &'static [(&'static str, &'static str)],
            Framing,
            bool,
            &'static str,
        );
        let cases: [Case; 3] = [
            (
                200,
                &[("x-a", "1"), ("date", "d")],
                Framing::Length(5),
                false,
                "HTTP/1.1 200 OK\r\nx-a: 1\r\ndate: d\r\ncontent-length: 5\r\n\r\n",
            ),
            (
                200,
                &[("content-length", "5"), ("date", "d")],
                Framing::Length(5),
                true,
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ndate: d\r\nconnection: close\r\n\r\n",
            ),
            (
                599,
                &[("date", "d"), ("connection", "close")],
                Framing::Chunked,
                true,
                "HTTP/1.1 599 <none>\r\ndate: d\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n",
            ),
        ];
        for (status, headers, framing, closing, expected) in cases {
            assert_eq!(head(status, headers, framing, closing), expected);
        }
        let h = head(204, &[], Framing::None, false);
        assert!(h.starts_with("HTTP/1.1 204 No Content\r\ndate: "), "{h}");
        assert!(h.ends_with(" GMT\r\n\r\n"), "{h}");
    }

    #[test]
    fn framing_follows_the_status_the_length_and_the_body() {
        let none = HeaderMap::new();
        let mut cl = HeaderMap::new();
        cl.insert(header::CONTENT_LENGTH, HeaderValue::from_static("7"));
        let mut bad = HeaderMap::new();
        bad.insert(header::CONTENT_LENGTH, HeaderValue::from_static("7x"));
        assert_eq!(framing(StatusCode::OK, &none, Some(3)), Framing::Length(3));
        assert_eq!(framing(StatusCode::OK, &none, None), Framing::Chunked);
        assert_eq!(framing(StatusCode::OK, &cl, None), Framing::Length(7));
        assert_eq!(framing(StatusCode::OK, &bad, Some(7)), Framing::Close);
        assert_eq!(
            framing(StatusCode::NO_CONTENT, &none, Some(3)),
            Framing::None
        );
        assert_eq!(framing(StatusCode::NOT_MODIFIED, &cl, None), Framing::None);
    }

    /// Writes `resp` over an in-memory stream: what the client reads, and whether the
    /// connection was kept.
    async fn written(resp: Response<Body>) -> (String, bool) {
        use tokio::io::AsyncReadExt;
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut io = Prefixed::new(server, Bytes::new());
        let mut out = Vec::new();
        let keep = write_response(&mut io, &mut out, resp, false, &mut None)
            .await
            .unwrap();
        drop(io);
        let mut text = String::new();
        client.read_to_string(&mut text).await.unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
        (body.unwrap_or_default(), keep)
    }

    fn response(body: &'static str, length: Option<&'static str>) -> Response<Body> {
        let body = http_body_util::Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|e| match e {})
            .boxed_unsync();
        let mut resp = Response::new(body);
        if let Some(l) = length {
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static(l));
        }
        resp
    }

    #[tokio::test]
    async fn a_body_longer_than_its_content_length_is_cut_and_the_connection_closed() {
        assert_eq!(
            written(response("hello", None)).await,
            ("hello".into(), true)
        );
        assert_eq!(
            written(response("hello", Some("5"))).await,
            ("hello".into(), true)
        );
        assert_eq!(
            written(response("hello", Some("3"))).await,
            ("hel".into(), false)
        );
        // Shorter: all of it, and the connection closes (the client waits for the rest).
        assert_eq!(
            written(response("hi", Some("5"))).await,
            ("hi".into(), false)
        );
    }

    #[test]
    fn chunk_sizes_are_lowercase_hex() {
        for (len, text) in [(1, "1\r\n"), (255, "ff\r\n"), (4096, "1000\r\n")] {
            let mut out = Vec::new();
            push_chunk_size(&mut out, len);
            assert_eq!(out, text.as_bytes());
        }
    }
}
