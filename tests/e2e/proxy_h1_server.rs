//! meshgate's own HTTP/1.1 server (`proxy/h1_server.rs`) and its hand-over to hyper's, over raw
//! sockets: pipelined requests answered in order whichever server reads them, a response of
//! unknown length chunked with the connection kept, a client that goes away mid-request
//! cancelling it upstream, and the requests handed to hyper (HEAD, HTTP/1.0) answered as before.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{eventually, gateway_yaml, static_service, TestGateway, Upstream};

async fn gateway() -> (TestGateway, Upstream) {
    let a = Upstream::start("a").await;
    let yaml = gateway_yaml(&["*"])
        + &static_service("a.svc", &[(&a, &[])])
        + &support::virtual_service("  - route: [{destination: {host: a.svc}}]\n");
    (TestGateway::start(&yaml).await, a)
}

/// Writes `request` and reads until the gateway closes the connection (bounded).
async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the gateway did not close the connection")
        .unwrap();
    out
}

/// One response off the front of `bytes`: its head (lower-cased) and body, and what follows.
fn response(bytes: &[u8]) -> (String, Vec<u8>, &[u8]) {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head")
        + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let mut rest = &bytes[end..];
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    };
    let mut body = Vec::new();
    if let Some(len) = header("content-length") {
        let len: usize = len.parse().unwrap();
        body.extend_from_slice(&rest[..len]);
        rest = &rest[len..];
    } else if header("transfer-encoding").as_deref() == Some("chunked") {
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
            rest = &rest[line_end + 2..];
            if size == 0 {
                assert!(rest.starts_with(b"\r\n"), "no trailers expected");
                rest = &rest[2..];
                break;
            }
            body.extend_from_slice(&rest[..size]);
            assert_eq!(&rest[size..size + 2], b"\r\n");
            rest = &rest[size + 2..];
        }
    }
    (head, body, rest)
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_whichever_server_reads_them() {
    let (gw, _a) = gateway().await;
    // Two GETs for meshgate's server, a POST that hands the connection to hyper's, a last GET
    // (hyper's now) that closes.
    let out = exchange(
        gw.addr(),
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /2 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n\
          POST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
          GET /4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let mut rest = out.as_slice();
    for (i, method) in ["GET", "GET", "POST", "GET"].iter().enumerate() {
        let (head, body, more) = response(rest);
        rest = more;
        let body = String::from_utf8_lossy(&body);
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
        assert!(head.contains("\r\nserver: istio-envoy\r\n"), "{head}");
        assert!(
            body.contains(&format!("method={method}\npath=/{}\n", i + 1)),
            "{body}"
        );
    }
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(rest));
}

#[tokio::test]
async fn a_response_of_unknown_length_is_chunked_and_the_connection_kept() {
    let (gw, a) = gateway().await;
    let out = exchange(
        gw.addr(),
        b"GET /stream/150000 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body, rest) = response(&out);
    assert!(
        head.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );
    assert!(!head.contains("content-length"), "{head}");
    assert_eq!(body.len(), 150_000);
    assert!(body.iter().all(|b| *b == b'x'));
    let (head, body, rest) = response(rest);
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("path=/after\n"));
    assert!(rest.is_empty());
    // Both on one downstream connection, and so (one at a time) on one upstream connection.
    assert_eq!(a.connections(), 1);
}

#[tokio::test]
async fn a_client_that_leaves_mid_request_cancels_it_upstream() {
    let (gw, a) = gateway().await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || a.in_flight() == 1).await);
    drop(s);
    assert!(
        eventually(Duration::from_secs(10), || a.in_flight() == 0).await,
        "the upstream request outlived its client"
    );
}

#[tokio::test]
async fn head_and_http10_requests_are_answered_by_hyper_as_before() {
    let (gw, _a) = gateway().await;
    let out = exchange(
        gw.addr(),
        b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200 ok\r\n"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n"),
        "a HEAD response has no body: {text}"
    );
    // Envoy refuses HTTP/1.0 with 426.
    let out = exchange(gw.addr(), b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.0 426 Upgrade Required\r\n"),
        "{text}"
    );
}
