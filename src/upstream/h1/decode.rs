//! Reading an HTTP/1.1 response: the head (httparse, headers sliced out of the received bytes
//! without copying), how its body is framed (RFC 9112 §6.3), and the chunked decoder. Pure
//! functions over a buffer; no I/O, so every split point is testable.
//! May not touch: sockets, pooling (`conn.rs`, `h1.rs`).

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version};
use smallvec::SmallVec;

/// The largest response head (and trailer block) read; Envoy's default is 60 KiB.
pub const MAX_HEAD: usize = 64 * 1024;
/// Header lines per response head (hyper's and Envoy's default).
pub const MAX_HEADERS: usize = 100;
/// The smallest header map a response is decoded into (16 slots, 12 usable). Room for the
/// headers added to it, and more: hyper's server reuses a response's map (cleared) for the
/// connection's next request, to which the proxy adds about eight (forwarding, request id, trace
/// context); a map sized to the response alone was grown (reallocated and rehashed) on every
/// request.
const MIN_HEADER_ROOM: usize = 12;
/// The longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Why a response could not be read: the upstream did not speak HTTP/1.1 correctly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid header in the response")]
    Header,
    #[error("invalid content-length in the response")]
    ContentLength,
    #[error("transfer-encoding in an HTTP/1.0 response")]
    TransferEncoding,
    #[error("unexpected 101 Switching Protocols")]
    Upgrade,
    #[error("invalid chunk size line")]
    ChunkSize,
    #[error("chunk data not followed by CRLF")]
    ChunkEnd,
    #[error("invalid trailers")]
    Trailers,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304, `content-length: 0`).
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// A response head read off the wire.
#[derive(Debug)]
pub struct Head {
    pub response: Response<()>,
    pub framing: Framing,
    /// The connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Header name and value positions in the head's bytes.
#[derive(Clone, Copy)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

/// Reads a response head from the front of `buf`, skipping interim (1xx) responses.
/// `Ok(None)`: more bytes are needed.
///
/// # Errors
/// A malformed or oversized head, or framing headers no body can be read by.
pub fn head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, DecodeError> {
    loop {
        if buf.is_empty() {
            return Ok(None);
        }
        // Not an array of `MAX_HEADERS`: that would be zeroed (1.6 KB) for every response.
        let mut spans: SmallVec<[Span; 24]> = SmallVec::new();
        let (len, code, version) = {
            let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut res = httparse::Response::new(&mut []);
            let bytes: &[u8] = buf;
            match httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut res, bytes, &mut raw)
            {
                Ok(httparse::Status::Complete(len)) => {
                    let base = bytes.as_ptr() as usize;
                    let at = |s: &[u8]| {
                        let start = (s.as_ptr() as usize - base) as u32;
                        (start, start + s.len() as u32)
                    };
                    spans.extend(res.headers.iter().map(|h| Span {
                        name: at(h.name.as_bytes()),
                        value: at(h.value),
                    }));
                    (len, res.code.unwrap_or(0), res.version.unwrap_or(1))
                }
                Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                    return Err(DecodeError::HeadTooLarge)
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(DecodeError::Head(httparse::Error::TooManyHeaders))
                }
                Err(e) => return Err(DecodeError::Head(e)),
            }
        };
        if len > MAX_HEAD {
            return Err(DecodeError::HeadTooLarge);
        }
        let status =
            StatusCode::from_u16(code).map_err(|_| DecodeError::Head(httparse::Error::Status))?;
        match code {
            // Interim responses are dropped (as hyper's client does); the final one follows.
            100 | 102..=199 => {
                buf.advance(len);
                continue;
            }
            101 => return Err(DecodeError::Upgrade),
            _ => {}
        }
        let bytes = buf.split_to(len).freeze();
        let version = if version == 1 {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        };
        let mut headers = HeaderMap::with_capacity((spans.len() + 2).max(MIN_HEADER_ROOM));
        let mut keep_alive = version == Version::HTTP_11;
        let mut saw_close = false;
        // The framing headers, read as they go by (no lookups afterwards): whether the last
        // `transfer-encoding` ends in `chunked`, and the length every `content-length` gives.
        let mut te_chunked = None;
        let mut length = Ok(None);
        for span in &spans {
            let name = HeaderName::from_bytes(&bytes[span.name.0 as usize..span.name.1 as usize])
                .map_err(|_| DecodeError::Header)?;
            let value = HeaderValue::from_maybe_shared(
                bytes.slice(span.value.0 as usize..span.value.1 as usize),
            )
            .map_err(|_| DecodeError::Header)?;
            if name == header::TRANSFER_ENCODING {
                te_chunked = Some(value_ends_chunked(&value));
            } else if name == header::CONTENT_LENGTH {
                length = length.and_then(|l| merge_length(l, &value));
            } else if name == header::CONNECTION {
                // Once any `Connection` line asks to close, a later `keep-alive` cannot undo it.
                if saw_close || has_token(&value, "close") {
                    saw_close = true;
                    keep_alive = false;
                } else if !keep_alive {
                    keep_alive = has_token(&value, "keep-alive");
                }
                // Persistence is this connection's business: a `Connection` that names no other
                // header is not kept (the proxy would remove it, with a rehash of the map).
                if only_persistence_tokens(&value) {
                    continue;
                }
            } else if name.as_str() == "keep-alive" {
                // This connection's keep-alive parameters: hop-by-hop, never forwarded.
                continue;
            }
            headers.append(name, value);
        }
        let framing = framing(te_chunked, length, status, version, method)?;
        if framing == Framing::Close {
            keep_alive = false;
        }
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        return Ok(Some(Head {
            response,
            framing,
            keep_alive,
        }));
    }
}

/// RFC 9112 §6.3, as hyper's client reads it: HEAD, 204 and 304 have no body; a
/// `transfer-encoding` ending in `chunked` is chunked, any other is read to the close; then
/// `content-length` (several values must agree); else to the close.
/// `te_chunked`: `None` without a `transfer-encoding`, else whether its last line ends in
/// `chunked`; `length`: the `content-length` values merged (`merge_length`).
fn framing(
    te_chunked: Option<bool>,
    length: Result<Option<u64>, DecodeError>,
    status: StatusCode,
    version: Version,
    method: &Method,
) -> Result<Framing, DecodeError> {
    if matches!(status.as_u16(), 204 | 304) || method == Method::HEAD {
        return Ok(Framing::Empty);
    }
    if let Some(chunked) = te_chunked {
        if version == Version::HTTP_10 {
            return Err(DecodeError::TransferEncoding);
        }
        return Ok(if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    Ok(match length? {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    })
}

/// Is the last transfer coding (of the last `transfer-encoding` line) `chunked`?
pub fn ends_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .is_some_and(value_ends_chunked)
}

/// Is the last transfer coding of one `transfer-encoding` line `chunked`?
fn value_ends_chunked(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .rsplit(|b| *b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// The length every `content-length` value agrees on (`None`: no such header), as hyper's
/// `content_length_parse_all`.
///
/// # Errors
/// A value that is not a decimal length, or two that differ.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, DecodeError> {
    headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .try_fold(None, merge_length)
}

/// The length so far (`None`: no value yet) merged with one more `content-length` line.
///
/// # Errors
/// A value that is not a decimal length, or one that differs from the length so far.
fn merge_length(mut length: Option<u64>, value: &HeaderValue) -> Result<Option<u64>, DecodeError> {
    for part in value.as_bytes().split(|b| *b == b',') {
        let n = parse_length(part.trim_ascii()).ok_or(DecodeError::ContentLength)?;
        if length.is_some_and(|l| l != n) {
            return Err(DecodeError::ContentLength);
        }
        length = Some(n);
    }
    Ok(length)
}

/// A decimal length of at most 18 digits (no sign, no spaces).
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

/// Does a comma-separated header value hold `token` (any case)?
fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .as_bytes()
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether a `Connection` value holds nothing but `close` and `keep-alive` (no header named).
fn only_persistence_tokens(value: &HeaderValue) -> bool {
    value.as_bytes().split(|b| *b == b',').all(|t| {
        let t = t.trim_ascii();
        t.is_empty() || t.eq_ignore_ascii_case(b"close") || t.eq_ignore_ascii_case(b"keep-alive")
    })
}

/// What the chunked decoder found next.
#[derive(Debug, PartialEq)]
pub enum Chunk {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
}

/// A chunked body being decoded (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data: bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines, then the final CRLF.
    Trailers,
    Done,
}

impl Chunked {
    /// Decodes what `buf` holds. `Ok(None)`: more bytes are needed.
    ///
    /// # Errors
    /// A malformed chunk-size line, data not followed by CRLF, or malformed trailers.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, DecodeError> {
        loop {
            match *self {
                Chunked::Done => return Ok(Some(Chunk::End)),
                Chunked::Size => {
                    let Some(nl) = memchr::memchr(b'\n', buf) else {
                        return if buf.len() > MAX_CHUNK_LINE {
                            Err(DecodeError::ChunkSize)
                        } else {
                            Ok(None)
                        };
                    };
                    let size = chunk_size(&buf[..nl]).ok_or(DecodeError::ChunkSize)?;
                    buf.advance(nl + 1);
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - take as u64;
                    *self = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                    return Ok(Some(Chunk::Data(buf.split_to(take).freeze())));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|b| *b != b'\r') {
                            return Err(DecodeError::ChunkEnd);
                        }
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(DecodeError::ChunkEnd);
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *self = Chunked::Done;
                        return Ok(Some(Chunk::End));
                    }
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let (len, lines) = match httparse::parse_headers(buf, &mut raw) {
                        Ok(httparse::Status::Complete(done)) => done,
                        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                            return Err(DecodeError::Trailers)
                        }
                        Ok(httparse::Status::Partial) => return Ok(None),
                        Err(_) => return Err(DecodeError::Trailers),
                    };
                    let mut trailers = HeaderMap::with_capacity(lines.len());
                    for h in lines {
                        let name = HeaderName::from_bytes(h.name.as_bytes())
                            .map_err(|_| DecodeError::Trailers)?;
                        let value =
                            HeaderValue::from_bytes(h.value).map_err(|_| DecodeError::Trailers)?;
                        trailers.append(name, value);
                    }
                    buf.advance(len);
                    *self = Chunked::Done;
                    return Ok(Some(Chunk::Trailers(trailers)));
                }
            }
        }
    }
}

/// A chunk-size line without its LF: hex digits, optional extensions after `;`, then CR.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r")?;
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let (digits, rest) = line.split_at(digits_end);
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    // Extensions are ignored; whitespace may come before the `;`.
    let rest = rest.trim_ascii_start();
    if !(rest.is_empty() || rest.starts_with(b";")) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        let v = (*d as char).to_digit(16)?;
        Some(n * 16 + u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8], method: Method) -> Result<Option<Head>, DecodeError> {
        head(&mut BytesMut::from(text), &method)
    }

    fn framing_of(text: &str) -> Result<Framing, DecodeError> {
        parse(text.as_bytes(), Method::GET).map(|h| h.expect("complete").framing)
    }

    #[test]
    fn a_head_is_read_at_every_split_point_and_leaves_the_body() {
        let text = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello";
        let head_len = text.len() - 5;
        for split in 0..text.len() {
            let mut buf = BytesMut::from(&text[..split]);
            let first = head(&mut buf, &Method::GET).unwrap();
            if split < head_len {
                assert!(first.is_none(), "split {split}");
                buf.extend_from_slice(&text[split..]);
            } else {
                assert!(first.is_some(), "split {split}");
                continue;
            }
            let h = head(&mut buf, &Method::GET).unwrap().unwrap();
            assert_eq!(h.response.status(), 200);
            assert_eq!(h.response.headers()["x-a"], "b");
            assert_eq!(h.framing, Framing::Length(5));
            assert!(h.keep_alive);
            assert_eq!(&buf[..], b"hello");
        }
    }

    /// More headers than the spans kept inline (24), up to the limit: every one arrives.
    #[test]
    fn many_headers_all_arrive() {
        let mut text = String::from("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n");
        for i in 0..MAX_HEADERS - 1 {
            text.push_str(&format!("x-h{i}: v{i}\r\n"));
        }
        text.push_str("\r\n");
        let h = parse(text.as_bytes(), Method::GET).unwrap().unwrap();
        assert_eq!(h.response.headers().len(), MAX_HEADERS);
        assert_eq!(h.response.headers()["x-h0"], "v0");
        assert_eq!(h.response.headers()["x-h98"], "v98");
    }

    #[test]
    fn interim_responses_are_skipped() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"[..],
        );
        let h = head(&mut buf, &Method::POST).unwrap().unwrap();
        assert_eq!(h.response.status(), 201);
        assert_eq!(h.framing, Framing::Empty);
        assert!(buf.is_empty());
        // Only the interim response so far.
        let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]);
        assert!(head(&mut buf, &Method::POST).unwrap().is_none());
        assert!(buf.is_empty());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing_of(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: CHUNKED\r\ncontent-length: 3\r\n\r\n"
            ),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"),
            Ok(Framing::Close)
        );
        assert_eq!(
            framing_of("HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
            Err(DecodeError::TransferEncoding)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ncontent-length: 7\r\ncontent-length: 7, 7\r\n\r\n"),
            Ok(Framing::Length(7))
        );
        for bad in ["7, 8", "-1", "+7", "0x10", "", "1234567890123456789"] {
            assert_eq!(
                framing_of(&format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n")),
                Err(DecodeError::ContentLength),
                "{bad}"
            );
        }
        assert_eq!(framing_of("HTTP/1.1 200 OK\r\n\r\n"), Ok(Framing::Close));
        assert_eq!(
            framing_of("HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n"),
            Ok(Framing::Empty)
        );
        assert_eq!(
            framing_of("HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n"),
            Ok(Framing::Empty)
        );
        let h = parse(
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n",
            Method::HEAD,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, Framing::Empty);
        assert_eq!(h.response.headers()["content-length"], "9");
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let ka = |text: &str| {
            parse(text.as_bytes(), Method::GET)
                .unwrap()
                .unwrap()
                .keep_alive
        };
        assert!(ka("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!ka(
            "HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!ka(
            "HTTP/1.1 200 OK\r\nconnection: close\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!ka("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(ka(
            "HTTP/1.0 200 OK\r\nconnection: upgrade, Keep-Alive\r\ncontent-length: 0\r\n\r\n"
        ));
        // Read to the close: never reused.
        assert!(!ka("HTTP/1.1 200 OK\r\n\r\n"));
    }

    /// `Connection` lines that only say close / keep-alive, and `Keep-Alive`, stay out of the
    /// map; one that names another header stays in (the proxy removes that header too).
    #[test]
    fn persistence_headers_stay_out_of_the_map() {
        let names = |text: &str| {
            let h = parse(text.as_bytes(), Method::GET).unwrap().unwrap();
            let mut names: Vec<String> = h
                .response
                .headers()
                .iter()
                .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
                .collect();
            names.sort();
            (names, h.keep_alive)
        };
        assert_eq!(
            names("HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n"),
            (vec!["content-length: 0".to_owned(), "x-a: 1".to_owned()], true)
        );
        assert_eq!(
            names("HTTP/1.1 200 OK\r\nconnection: close, \r\ncontent-length: 0\r\n\r\n"),
            (vec!["content-length: 0".to_owned()], false)
        );
        assert_eq!(
            names("HTTP/1.1 200 OK\r\nconnection: keep-alive, x-secret\r\nx-secret: s\r\ncontent-length: 0\r\n\r\n"),
            (
                vec![
                    "connection: keep-alive, x-secret".to_owned(),
                    "content-length: 0".to_owned(),
                    "x-secret: s".to_owned()
                ],
                true
            )
        );
    }

    #[test]
    fn malformed_and_oversized_heads_are_errors() {
        assert!(matches!(
            parse(b"HTTP/1.1 2000 OK\r\n\r\n", Method::GET),
            Err(DecodeError::Head(_))
        ));
        assert!(matches!(
            parse(b"SSH-2.0-OpenSSH\r\n\r\n", Method::GET),
            Err(DecodeError::Head(_))
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", Method::GET),
            Err(DecodeError::Head(_))
        ));
        assert_eq!(
            parse(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", Method::GET).unwrap_err(),
            DecodeError::Upgrade
        );
        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("x-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert!(parse(many.as_bytes(), Method::GET).is_err());
        // Exactly at the limit still reads; one byte past it without the end does not.
        let mut big = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
        big.resize(MAX_HEAD - 4, b'a');
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(big.len(), MAX_HEAD);
        assert!(parse(&big, Method::GET).unwrap().is_some());
        let mut open = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
        open.resize(MAX_HEAD, b'a');
        assert!(parse(&open, Method::GET).unwrap().is_none());
        open.push(b'a');
        assert_eq!(
            parse(&open, Method::GET).unwrap_err(),
            DecodeError::HeadTooLarge
        );
    }

    /// Feeds `wire` to a chunked decoder `step` bytes at a time; returns the data and trailers.
    fn decode_all(wire: &[u8], step: usize) -> Result<(Vec<u8>, Option<HeaderMap>), DecodeError> {
        let mut dec = Chunked::Size;
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        loop {
            match dec.decode(&mut buf)? {
                Some(Chunk::Data(d)) => data.extend_from_slice(&d),
                Some(Chunk::Trailers(t)) => trailers = Some(t),
                Some(Chunk::End) => {
                    assert!(buf.is_empty() || fed == wire.len());
                    return Ok((data, trailers));
                }
                None => {
                    assert!(fed < wire.len(), "needs more than the whole body");
                    let end = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_at_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-sum: 9\r\nx-b: 2\r\n\r\n";
        for step in 1..wire.len() {
            let (data, trailers) = decode_all(wire, step).unwrap();
            assert_eq!(data, b"helloabcdefghijklmnopqrstuvwxyz", "step {step}");
            let t = trailers.unwrap();
            assert_eq!(
                (t["x-sum"].as_bytes(), t["x-b"].as_bytes()),
                (&b"9"[..], &b"2"[..])
            );
        }
        let (data, trailers) = decode_all(b"3\r\nabc\r\n0\r\n\r\n", 1).unwrap();
        assert_eq!((data.as_slice(), trailers), (&b"abc"[..], None));
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for bad in [
            &b"g\r\nx\r\n0\r\n\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"3 x\r\nabc\r\n0\r\n\r\n",
            b"1000000000000000\r\n",
            b"0\r\nbad trailer\r\n\r\n",
        ] {
            assert!(
                decode_all(bad, bad.len()).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(chunk_size(b"fffffffffffffff\r"), Some(0xfff_ffff_ffff_ffff));
        let mut long = vec![b'1'];
        long.extend(std::iter::repeat_n(b' ', MAX_CHUNK_LINE + 1));
        assert_eq!(
            Chunked::Size.decode(&mut BytesMut::from(&long[..])),
            Err(DecodeError::ChunkSize)
        );
    }

    /// Mutations of valid responses (bytes changed, cut, repeated) and random bytes, fed to the
    /// head reader and the chunked decoder at random split points: errors, never a panic.
    #[test]
    fn no_input_panics_the_decoders() {
        let seeds: [&[u8]; 4] = [
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: keep-alive\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No Content\r\ncontent-length: 1, 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            b"5;a=b\r\nhello\r\nf\r\n0123456789abcde\r\n0\r\nx-t: 1\r\n\r\n",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let seed = seeds[(next() % 4) as usize];
            let mut input = seed.to_vec();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % (input.len() + 1);
                match next() % 4 {
                    0 if at < input.len() => input[at] = next() as u8,
                    1 => input.truncate(at),
                    2 => {
                        let piece = input[at..].to_vec();
                        input.extend_from_slice(&piece);
                    }
                    _ => input.insert(at, b"\r\n:;, 0fF\x00\x80"[(next() % 11) as usize]),
                }
            }
            if next() % 8 == 0 {
                input = (0..next() % 64).map(|_| next() as u8).collect();
            }
            let split = (next() as usize) % (input.len() + 1);
            let mut buf = BytesMut::from(&input[..split]);
            let _ = head(&mut buf, &Method::GET);
            buf.extend_from_slice(&input[split..]);
            let _ = head(&mut buf, &Method::GET);
            let mut dec = Chunked::Size;
            let mut buf = BytesMut::from(&input[..split]);
            let mut fed = false;
            for _ in 0..64 {
                match dec.decode(&mut buf) {
                    Ok(Some(Chunk::End)) | Err(_) => break,
                    Ok(Some(_)) => {}
                    Ok(None) if fed => break,
                    Ok(None) => {
                        buf.extend_from_slice(&input[split..]);
                        fed = true;
                    }
                }
            }
        }
    }
}
