//! Unit tests of the framing scanner: verdicts, body skipping, piece-size independence.

use super::*;

fn scan(stream: &[u8], piece: usize) -> Option<(u64, FramingError)> {
    let f = Framing::new();
    let mut s = Scanner::new(f.clone());
    for p in stream.chunks(piece.max(1)) {
        s.feed(p);
    }
    f.flagged()
}

const CL_TE: &[u8] = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

#[test]
fn cl_and_te_and_duplicate_cl_are_noted() {
    for piece in [1, 3, 1000] {
        assert_eq!(
            scan(CL_TE, piece),
            Some((0, FramingError::ContentLengthAndTransferEncoding))
        );
        let dup = b"POST / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nx";
        assert_eq!(
            scan(dup, piece),
            Some((0, FramingError::DuplicateContentLength))
        );
    }
}

#[test]
fn bodies_are_skipped_to_the_next_head() {
    let mut stream =
        b"\r\nPOST / HTTP/1.1\r\nContent-Length: 28\r\n\r\nTransfer-Encoding: chunked\r\n".to_vec();
    stream.extend_from_slice(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;a=b\r\nCL: \r\n0\r\nX: 1\r\n\r\n",
    );
    stream.extend_from_slice(b"GET / HTTP/1.1\n\n");
    stream.extend_from_slice(CL_TE);
    for piece in [1, 2, 7, 4096] {
        assert_eq!(
            scan(&stream, piece),
            Some((3, FramingError::ContentLengthAndTransferEncoding)),
            "piece {piece}"
        );
    }
}

#[test]
fn it_stops_where_it_cannot_follow() {
    assert_eq!(scan(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 5), None);
    let bad_chunk = [
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".as_slice(),
        CL_TE,
    ]
    .concat();
    assert_eq!(scan(&bad_chunk, 4), None);
}

#[test]
fn the_service_asks_per_request() {
    let f = Framing::new();
    f.flag(1, FramingError::DuplicateContentLength);
    assert_eq!(f.next_request(), None);
    assert_eq!(f.next_request(), Some(FramingError::DuplicateContentLength));
    assert_eq!(f.next_request(), None);
}

/// A head of exactly `MAX_HEAD` bytes is read, one byte longer stops the scanner, whatever the
/// pieces; a head split anywhere (even between CR and LF of its empty line) ends where it ends.
#[test]
fn the_head_limit_and_its_end_hold_across_pieces() {
    let head = |len: usize| {
        let base = "GET / HTTP/1.1\r\nX: \r\n\r\n".len();
        format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(len - base))
    };
    for piece in [1, 3, 1000, 200_000] {
        let at_limit = [head(MAX_HEAD).as_bytes(), CL_TE].concat();
        assert_eq!(
            scan(&at_limit, piece),
            Some((1, FramingError::ContentLengthAndTransferEncoding)),
            "piece {piece}"
        );
        let over = [head(MAX_HEAD + 1).as_bytes(), CL_TE].concat();
        assert_eq!(scan(&over, piece), None, "piece {piece}");
    }
    let two = [b"GET / HTTP/1.1\r\nA: 1\r\n\r\n\r\n".as_slice(), CL_TE].concat();
    for piece in 1..=two.len() {
        assert_eq!(
            scan(&two, piece),
            Some((1, FramingError::ContentLengthAndTransferEncoding)),
            "piece {piece}"
        );
    }
}

/// The shortcut for heads without a body takes only those: a length or transfer coding in any
/// case, a tunnel or HTTP/2's preface all get the full reading.
#[test]
fn only_heads_without_framing_are_plain() {
    assert!(is_plain(
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Content-Length: 5\r\n\r\n"
    ));
    for head in [
        b"POST / HTTP/1.1\r\ncOnTeNt-LeNgTh: 5\r\n\r\n".as_slice(),
        b"POST / HTTP/1.1\r\nHost: x\r\nTRANSFER-ENCODING: chunked\r\n\r\n",
        b"GET / HTTP/1.1\nContent-Length : 5\n\n",
        b"CONNECT x:443 HTTP/1.1\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\n",
    ] {
        assert!(!is_plain(head), "{}", String::from_utf8_lossy(head));
    }
    // Counted: the second request on the connection is the one noted.
    let stream = [b"GET / HTTP/1.1\r\n\r\n".as_slice(), CL_TE].concat();
    assert_eq!(
        scan(&stream, 4096),
        Some((1, FramingError::ContentLengthAndTransferEncoding))
    );
}
