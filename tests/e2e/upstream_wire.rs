//! The HTTP/1.1 upstream codec end to end, against a raw upstream that writes the wire by hand:
//! a body read to the close (and that connection not reused), a chunked body with extensions
//! and trailers arriving in pieces (and that connection reused), a response sent before the
//! request body was read (the rest of the body still sent, the answer forwarded), a response
//! streamed back while the request body is still streaming in, and malformed responses (502
//! with `upstream_reset_before_response_started{protocol_error}`).

use crate::support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::{gateway_yaml, service_at, virtual_service, Client, TestGateway};

const LIMIT: Duration = Duration::from_secs(10);

/// A raw upstream; returns its address and the number of connections it accepted.
async fn raw_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    (addr, accepted)
}

/// Answers by path until the connection ends.
async fn serve(mut s: TcpStream) {
    let mut buf = Vec::new();
    while let Some(head) = read_until(&mut s, &mut buf, b"\r\n\r\n").await {
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        match path.as_str() {
            "/close-delimited" => {
                w(
                    &mut s,
                    b"HTTP/1.1 200 OK\r\nx-framing: close\r\n\r\nread to ",
                )
                .await;
                w(&mut s, b"the end").await;
                return;
            }
            "/chunked" => {
                w(
                    &mut s,
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4;ext=1\r\nab",
                )
                .await;
                w(&mut s, b"cd\r\n2\r").await;
                w(&mut s, b"\nef\r\n0\r\nx-sum: 6\r\n\r\n").await;
            }
            "/early" => {
                // Answers at once, then reads the body the gateway goes on sending.
                w(&mut s, b"HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\ncontent-length: 4\r\n\r\nnope",
                )
                .await;
                let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
                while buf.len() < len {
                    let mut chunk = [0u8; 16 * 1024];
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                return;
            }
            "/echo" => {
                // The chunked request body goes back as it comes, as the chunked response body.
                w(
                    &mut s,
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                )
                .await;
                loop {
                    if !buf.is_empty() {
                        let _ = s.write_all(&buf).await;
                        if buf.ends_with(b"0\r\n\r\n") {
                            return;
                        }
                        buf.clear();
                    }
                    let mut chunk = [0u8; 4096];
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            }
            "/garbage" => {
                w(&mut s, b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
                return;
            }
            "/bad-length" => {
                w(
                    &mut s,
                    b"HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\nabc",
                )
                .await;
                return;
            }
            _ => w(&mut s, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await,
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads until `end` is in `buf`; returns what came before it (removed from `buf`).
async fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, end: &[u8]) -> Option<String> {
    loop {
        if let Some(at) = buf.windows(end.len()).position(|w| w == end) {
            let text = String::from_utf8_lossy(&buf[..at]).into_owned();
            buf.drain(..at + end.len());
            return Some(text);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn gateway(up: SocketAddr) -> TestGateway {
    let yaml = gateway_yaml(&["*"])
        + &service_at("a.svc", "HTTP", &[up])
        + &virtual_service("  - route: [{destination: {host: a.svc}}]\n");
    TestGateway::start(&yaml).await
}

#[tokio::test]
async fn a_body_read_to_the_close_arrives_whole_and_its_connection_is_not_reused() {
    let (up, accepted) = raw_upstream().await;
    let gw = gateway(up).await;
    let c = Client::http1(gw.addr());
    let r = c.get("x", "/close-delimited").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (200, "read to the end")
    );
    assert_eq!(r.header("x-framing"), Some("close"));
    let r = c.get("x", "/close-delimited").await;
    assert_eq!(r.body, "read to the end");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "a new connection each time"
    );
}

#[tokio::test]
async fn a_chunked_body_in_pieces_arrives_whole_and_its_connection_is_reused() {
    let (up, accepted) = raw_upstream().await;
    let gw = gateway(up).await;
    let c = Client::http1(gw.addr());
    for _ in 0..3 {
        let r = c.get("x", "/chunked").await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "abcdef"));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one kept-alive connection"
    );
}

#[tokio::test]
async fn an_answer_before_the_body_was_read_is_forwarded() {
    let (up, accepted) = raw_upstream().await;
    let gw = gateway(up).await;
    let c = Client::http1(gw.addr());
    let big = bytes::Bytes::from(vec![b'x'; 512 * 1024]);
    let req = c
        .request("x", "/early")
        .method("POST")
        .body(http_body_util::Full::new(big))
        .unwrap();
    let r = c.send(req).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (413, "nope"));
    // `connection: close`: the next request gets a new connection.
    assert_eq!(c.get("x", "/").await.body, "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_response_streams_back_while_the_request_body_streams_in() {
    let (up, _) = raw_upstream().await;
    let gw = gateway(up).await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    let mut buf = Vec::new();
    let exchange = async {
        s.write_all(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n",
        )
        .await
        .unwrap();
        let head = read_until(&mut s, &mut buf, b"\r\n\r\n").await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        // The first piece comes back before the second is sent.
        read_until(&mut s, &mut buf, b"first").await.unwrap();
        s.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await.unwrap();
        read_until(&mut s, &mut buf, b"second").await.unwrap();
        read_until(&mut s, &mut buf, b"0\r\n\r\n").await.unwrap();
    };
    tokio::time::timeout(LIMIT, exchange)
        .await
        .expect("echo streamed both ways");
}

#[tokio::test]
async fn malformed_responses_are_502_protocol_errors() {
    let (up, _) = raw_upstream().await;
    let gw = gateway(up).await;
    let c = Client::http1(gw.addr());
    for path in ["/garbage", "/bad-length"] {
        let r = c.get("x", path).await;
        assert_eq!(r.status, 502, "{path}");
        assert!(
            r.body.contains("protocol_error") || r.body.contains("protocol error"),
            "{path}: {}",
            r.body
        );
    }
}

async fn w(s: &mut TcpStream, bytes: &[u8]) {
    let _ = s.write_all(bytes).await;
}
