//! Writing an HTTP/1.1 request: the head in one buffer, the body's framing chosen the way hyper's
//! client chooses it (so the wire is what it was), and chunk framing. Pure; no I/O.
//! May not touch: sockets (`conn.rs`).

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, Method};

use super::decode;
use crate::upstream::outgoing::Outgoing;

/// How the request body goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyFraming {
    /// Exactly this many bytes (0: no body is sent).
    Length(u64),
    /// Chunked; trailers named in the request's `trailer` header are sent.
    Chunked { trailers: Vec<HeaderName> },
}

/// What is known of the body before it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySize {
    /// It has already ended.
    None,
    Known(u64),
    Unknown,
}

/// The request head, and how the body that follows it is framed.
///
/// As hyper's client: a body that has ended sends none (the client's `content-length` header is
/// kept as it is); a `transfer-encoding` is honoured (made to end in `chunked`); then a valid
/// `content-length`; a body of unknown size is chunked, except for GET, HEAD and CONNECT, which
/// send none; a body of known size gets its `content-length`.
pub fn head(out: &Outgoing<'_>, size: BodySize) -> (Bytes, BodyFraming) {
    let headers = out.headers;
    // One look at the names (a handful, compared as known names) instead of two hashed lookups.
    let (mut has_te, mut has_cl) = (false, false);
    for name in headers.keys() {
        has_te |= name == header::TRANSFER_ENCODING;
        has_cl |= name == header::CONTENT_LENGTH;
    }
    // An invalid `content-length` is as none: a body of unknown size is chunked.
    let cl = if has_cl {
        decode::content_length(headers).ok().flatten()
    } else {
        None
    };
    // (framing, skip transfer-encoding lines, skip content-length lines, extra line)
    let (framing, skip_te, skip_cl, extra): (BodyFraming, bool, bool, Option<Extra>) = match size {
        BodySize::None => (BodyFraming::Length(0), true, false, None),
        _ if has_te => {
            let extra = (!decode::ends_chunked(headers)).then_some(Extra::Chunked);
            (chunked(headers), false, true, extra)
        }
        _ => match (cl, size) {
            (Some(n), _) => (BodyFraming::Length(n), false, false, None),
            (None, BodySize::Unknown)
                if matches!(*out.method, Method::GET | Method::HEAD | Method::CONNECT) =>
            {
                (BodyFraming::Length(0), false, false, None)
            }
            (None, BodySize::Unknown) => (chunked(headers), false, true, Some(Extra::Chunked)),
            (None, BodySize::Known(n)) => {
                (BodyFraming::Length(n), false, true, Some(Extra::Length(n)))
            }
            (None, BodySize::None) => (BodyFraming::Length(0), false, false, None),
        },
    };
    // The attempt's own headers replace the head's of the same name (rarely any).
    let replacing = out.extra.iter().any(|(n, _)| headers.contains_key(n));

    let target = out.path_and_query.as_str();
    let target = if target.is_empty() { "/" } else { target };
    let mut len = out.method.as_str().len() + target.len() + 13 + 2 + 40;
    let own = out.extra.iter().chain(out.added).map(|(n, v)| (n, v));
    for (name, value) in headers.iter().chain(own) {
        len += name.as_str().len() + value.len() + 4;
    }
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(out.method.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(target.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if (skip_te && name == header::TRANSFER_ENCODING)
            || (skip_cl && name == header::CONTENT_LENGTH)
            || (replacing && out.replaced(name))
        {
            continue;
        }
        put_line(&mut buf, name.as_str().as_bytes(), value.as_bytes());
    }
    for (name, value) in out.extra.iter().chain(out.added) {
        put_line(&mut buf, name.as_str().as_bytes(), value.as_bytes());
    }
    match extra {
        Some(Extra::Chunked) => buf.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Some(Extra::Length(n)) => {
            let mut digits = itoa::Buffer::new();
            put_line(&mut buf, b"content-length", digits.format(n).as_bytes());
        }
        None => {}
    }
    buf.extend_from_slice(b"\r\n");
    (Bytes::from(buf), framing)
}

/// A header line the encoder adds.
enum Extra {
    Chunked,
    Length(u64),
}

fn put_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Chunked framing, with the trailer names the request declares.
fn chunked(headers: &HeaderMap) -> BodyFraming {
    let trailers = headers
        .get_all(header::TRAILER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|s| HeaderName::from_bytes(s.trim().as_bytes()).ok())
        .collect();
    BodyFraming::Chunked { trailers }
}

/// A chunk's size line (`1a\r\n`).
pub fn chunk_line(len: usize) -> Bytes {
    Bytes::from(format!("{len:x}\r\n"))
}

/// The last chunk with the declared trailers in `trailers` (those not declared, and those that
/// may not be trailers, are left out), and the end of the body.
pub fn last_chunk(trailers: Option<&HeaderMap>, declared: &[HeaderName]) -> Bytes {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"0\r\n");
    if let Some(t) = trailers {
        for (name, value) in t {
            if declared.contains(name) && may_trail(name) {
                put_line(&mut out, name.as_str().as_bytes(), value.as_bytes());
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

/// Fields that framing, routing or authentication depend on may not be trailers (RFC 9110 §6.5.1).
fn may_trail(name: &HeaderName) -> bool {
    !matches!(
        *name,
        header::TRANSFER_ENCODING
            | header::CONTENT_LENGTH
            | header::HOST
            | header::TRAILER
            | header::CONTENT_TYPE
            | header::CONTENT_ENCODING
            | header::CONTENT_RANGE
            | header::AUTHORIZATION
            | header::CACHE_CONTROL
            | header::EXPECT
            | header::MAX_FORWARDS
            | header::PRAGMA
            | header::RANGE
            | header::TE
            | header::SET_COOKIE
            | header::WWW_AUTHENTICATE
            | header::PROXY_AUTHENTICATE
            | header::PROXY_AUTHORIZATION
            | header::AGE
            | header::EXPIRES
            | header::DATE
            | header::LOCATION
            | header::RETRY_AFTER
            | header::VARY
            | header::WARNING
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_with(
        method: Method,
        headers: &[(&str, &str)],
        extra: &[(HeaderName, http::HeaderValue)],
        size: BodySize,
    ) -> (String, BodyFraming) {
        encode_added(method, headers, extra, &[], size)
    }

    fn encode_added(
        method: Method,
        headers: &[(&str, &str)],
        extra: &[(HeaderName, http::HeaderValue)],
        added: &[(HeaderName, http::HeaderValue)],
        size: BodySize,
    ) -> (String, BodyFraming) {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let pq = http::uri::PathAndQuery::from_static("/a?b=1");
        let authority = http::uri::Authority::from_static("127.0.0.1:80");
        let out = Outgoing {
            method: &method,
            path_and_query: &pq,
            headers: &map,
            extra,
            added,
            authority: &authority,
        };
        let (bytes, framing) = head(&out, size);
        (String::from_utf8(bytes.to_vec()).unwrap(), framing)
    }

    fn encode(method: Method, headers: &[(&str, &str)], size: BodySize) -> (String, BodyFraming) {
        encode_with(method, headers, &[], size)
    }

    #[test]
    fn a_head_is_written_in_origin_form_with_every_header() {
        let (text, framing) = encode(
            Method::GET,
            &[("host", "example.com"), ("x-a", "1"), ("x-a", "2")],
            BodySize::None,
        );
        assert_eq!(
            text,
            "GET /a?b=1 HTTP/1.1\r\nhost: example.com\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
        assert_eq!(framing, BodyFraming::Length(0));
    }

    /// The added headers (a trace context) follow the head's and the attempt's own, before the
    /// framing line the encoder adds.
    #[test]
    fn added_headers_follow_the_heads_own() {
        let h = |n: &'static str, v: &'static str| {
            (
                HeaderName::from_static(n),
                http::HeaderValue::from_static(v),
            )
        };
        let (text, _) = encode_added(
            Method::POST,
            &[("host", "example.com")],
            &[h("x-envoy-attempt-count", "1")],
            &[h("traceparent", "00-ab-cd-01"), h("x-b3-sampled", "1")],
            BodySize::Known(3),
        );
        assert_eq!(
            text,
            "POST /a?b=1 HTTP/1.1\r\nhost: example.com\r\nx-envoy-attempt-count: 1\r\n\
             traceparent: 00-ab-cd-01\r\nx-b3-sampled: 1\r\ncontent-length: 3\r\n\r\n"
        );
    }

    #[test]
    fn body_framing_is_hypers() {
        let lines = |text: &str| -> Vec<String> {
            text.split("\r\n")
                .skip(1)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        };
        // Known size: its content-length.
        let (t, f) = encode(Method::POST, &[], BodySize::Known(12));
        assert_eq!(
            (lines(&t), f),
            (vec!["content-length: 12".into()], BodyFraming::Length(12))
        );
        // The client's content-length is kept.
        let (t, f) = encode(Method::POST, &[("content-length", "5")], BodySize::Unknown);
        assert_eq!(
            (lines(&t), f),
            (vec!["content-length: 5".into()], BodyFraming::Length(5))
        );
        // Unknown size: chunked, except for GET/HEAD (no body).
        let (t, f) = encode(Method::PUT, &[], BodySize::Unknown);
        assert_eq!(lines(&t), vec!["transfer-encoding: chunked".to_owned()]);
        assert_eq!(f, BodyFraming::Chunked { trailers: vec![] });
        let (t, f) = encode(Method::GET, &[], BodySize::Unknown);
        assert_eq!(
            (lines(&t), f),
            (Vec::<String>::new(), BodyFraming::Length(0))
        );
        // An invalid content-length gives way to chunked.
        let (t, _) = encode(
            Method::POST,
            &[("content-length", "1, 2")],
            BodySize::Unknown,
        );
        assert_eq!(lines(&t), vec!["transfer-encoding: chunked".to_owned()]);
        // A transfer-encoding is kept, made to end in chunked; content-length dropped.
        let (t, f) = encode(
            Method::POST,
            &[
                ("transfer-encoding", "gzip"),
                ("content-length", "5"),
                ("trailer", "x-sum, x-n"),
            ],
            BodySize::Unknown,
        );
        assert_eq!(
            lines(&t),
            vec![
                "transfer-encoding: gzip".to_owned(),
                "trailer: x-sum, x-n".into(),
                "transfer-encoding: chunked".into()
            ]
        );
        assert_eq!(
            f,
            BodyFraming::Chunked {
                trailers: vec![
                    HeaderName::from_static("x-sum"),
                    HeaderName::from_static("x-n")
                ]
            }
        );
        // An ended body: none sent, transfer-encoding dropped.
        let (t, f) = encode(
            Method::POST,
            &[("transfer-encoding", "chunked")],
            BodySize::None,
        );
        assert_eq!(
            (lines(&t), f),
            (Vec::<String>::new(), BodyFraming::Length(0))
        );
    }

    #[test]
    fn the_attempts_headers_replace_the_heads() {
        let extra = [(
            HeaderName::from_static("x-envoy-attempt-count"),
            http::HeaderValue::from_static("2"),
        )];
        let (text, _) = encode_with(
            Method::GET,
            &[("host", "h"), ("x-envoy-attempt-count", "7"), ("x-b", "1")],
            &extra,
            BodySize::None,
        );
        assert_eq!(
            text,
            "GET /a?b=1 HTTP/1.1\r\nhost: h\r\nx-b: 1\r\nx-envoy-attempt-count: 2\r\n\r\n"
        );
    }

    #[test]
    fn chunk_framing() {
        assert_eq!(&chunk_line(26)[..], b"1a\r\n");
        assert_eq!(&chunk_line(1)[..], b"1\r\n");
        let mut t = HeaderMap::new();
        t.insert("x-sum", "9".parse().unwrap());
        t.insert("x-other", "1".parse().unwrap());
        t.insert("content-length", "1".parse().unwrap());
        let declared = [
            HeaderName::from_static("x-sum"),
            HeaderName::from_static("content-length"),
        ];
        assert_eq!(
            &last_chunk(Some(&t), &declared)[..],
            b"0\r\nx-sum: 9\r\n\r\n"
        );
        assert_eq!(&last_chunk(None, &declared)[..], b"0\r\n\r\n");
    }
}
