//! The keep-alive race end to end, against a raw upstream that closes a kept-alive connection
//! when the next request arrives on it, without answering: an idempotent request is sent again
//! at once on a fresh connection (the client never sees the race), a non-idempotent one is never
//! sent twice (503 UC, as Envoy), and an upstream that closes every connection after its response
//! costs no request.

use crate::support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::{gateway_yaml, service_at, virtual_service, Client, TestGateway};

/// What the raw upstream does with the second request of a connection.
#[derive(Clone, Copy)]
enum Second {
    /// Closes the connection without a byte of response (the keep-alive race).
    Drop,
    /// Never happens: the first response carries `connection: close` and the socket closes.
    Close,
}

/// Requests (heads) the upstream read, by method.
#[derive(Default)]
struct Seen {
    get: AtomicUsize,
    post: AtomicUsize,
}

async fn raw_upstream(second: Second) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, second, counts.clone()));
        }
    });
    (addr, seen)
}

async fn serve(mut s: TcpStream, second: Second, seen: Arc<Seen>) {
    let mut buf = Vec::new();
    for n in 0.. {
        let Some(head) = read_head(&mut s, &mut buf).await else {
            return;
        };
        if head.starts_with("POST") {
            seen.post.fetch_add(1, Ordering::SeqCst);
        } else {
            seen.get.fetch_add(1, Ordering::SeqCst);
        }
        match (n, second) {
            (0, Second::Drop) => {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
                    .await;
            }
            (_, Second::Drop) => return,
            (_, Second::Close) => {
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 4\r\n\r\nonce",
                    )
                    .await;
                return;
            }
        }
    }
}

/// Reads one request head (the tests send no bodies).
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn send(c: &Client, method: &str) -> support::Reply {
    let req = c
        .request("x", "/")
        .method(method)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    c.send(req).await
}

async fn gateway(up: SocketAddr, retries: &str) -> TestGateway {
    let yaml = gateway_yaml(&["*"])
        + &service_at("a.svc", "HTTP", &[up])
        + &virtual_service(&format!(
            "  - route: [{{destination: {{host: a.svc}}}}]\n{retries}"
        ));
    TestGateway::start(&yaml).await
}

#[tokio::test]
async fn an_idempotent_request_on_a_connection_closed_under_it_is_sent_again_fresh() {
    let (up, seen) = raw_upstream(Second::Drop).await;
    // No retries configured: what saves the request is not a retry policy.
    let gw = gateway(up, "    retries: {attempts: 0}\n").await;
    let c = Client::http1(gw.addr());
    for i in 0..5 {
        let r = c.get("x", "/").await;
        assert_eq!(
            (r.status.as_u16(), r.body.as_str()),
            (200, "first"),
            "request {i}"
        );
    }
    // Requests 2..5 each met the race on the connection the previous one left idle, and went
    // again on a new connection: 1 + 4 × 2 heads seen.
    assert_eq!(seen.get.load(Ordering::SeqCst), 9);
}

#[tokio::test]
async fn a_non_idempotent_request_is_never_sent_twice() {
    let (up, seen) = raw_upstream(Second::Drop).await;
    let gw = gateway(up, "    retries: {attempts: 0}\n").await;
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("x", "/").await.status, 200);
    let r = send(&c, "POST").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-envoy-attempt-count"), None);
    assert_eq!(seen.post.load(Ordering::SeqCst), 1);
    // The next GET does not find that connection (it is gone), and is served.
    assert_eq!(c.get("x", "/").await.status, 200);
}

#[tokio::test]
async fn an_upstream_closing_after_each_response_costs_no_request() {
    let (up, seen) = raw_upstream(Second::Close).await;
    let gw = gateway(up, "    retries: {attempts: 0}\n").await;
    let c = Client::http1(gw.addr());
    for i in 0..20 {
        let method = if i % 2 == 0 { "GET" } else { "POST" };
        let r = send(&c, method).await;
        assert_eq!(
            (r.status.as_u16(), r.body.as_str()),
            (200, "once"),
            "{method} {i}"
        );
    }
    assert_eq!(seen.get.load(Ordering::SeqCst), 10);
    assert_eq!(seen.post.load(Ordering::SeqCst), 10);
}
