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
