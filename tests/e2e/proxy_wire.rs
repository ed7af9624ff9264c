//! Wire-level hardening (issue 17), each over a raw socket: no panic on any request target,
//! servlet path parameters on dot-segments, invalid Host, CONNECT, transfer codings, ambiguous
//! framing (CL+TE, duplicate CL, malformed chunks) and an upstream response with CL+TE.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::{gateway_yaml, static_service, Client, TestGateway, Upstream};

/// A gateway whose `/admin` is denied by a direct response and everything else goes to `a`
/// (`/once/*` without retries, so the request body streams once instead of being kept).
async fn gateway() -> (TestGateway, Upstream) {
    let a = Upstream::start("a").await;
    let yaml = gateway_yaml(&["*"])
        + &static_service("a.svc", &[(&a, &[])])
        + &support::virtual_service(
            "  - match: [{uri: {prefix: /admin}}]\n    directResponse: {status: 403, body: {string: denied}}\n  - match: [{uri: {prefix: /once/}}]\n    rewrite: {uri: /}\n    retries: {attempts: 0}\n    route: [{destination: {host: a.svc}}]\n  - route: [{destination: {host: a.svc}}]\n",
        );
    (TestGateway::start(&yaml).await, a)
}

/// A parsed HTTP/1 response read to the end of the connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    /// Lower-cased `name: value` lines.
    headers: Vec<String>,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}: ");
        self.headers.iter().find_map(|h| h.strip_prefix(&prefix))
    }

    /// Envoy's codec-error reply: status, `Bad Request`-style body, server, connection close.
    fn assert_local(&self, status: u16, body: &str, close: bool) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.body, body, "{self:?}");
        assert_eq!(self.header("server"), Some("istio-envoy"), "{self:?}");
        if close {
            assert_eq!(self.header("connection"), Some("close"), "{self:?}");
        }
    }
}

/// Sends `request` as written and reads until the gateway closes (bounded).
async fn raw(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the gateway did not close the connection");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Raw {
        status,
        headers: lines.map(|l| l.to_ascii_lowercase()).collect(),
        body: body.to_owned(),
    }
}

fn get(target: &[u8]) -> Vec<u8> {
    [
        b"GET ".as_slice(),
        target,
        b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ]
    .concat()
}

#[tokio::test]
async fn percent_before_raw_utf8_in_the_path_is_served_not_a_panic() {
    let (gw, a) = gateway().await;
    for target in [
        "/%\u{e9}".as_bytes(),
        "/a%\u{20ac}b".as_bytes(),
        "/%4\u{1f600}".as_bytes(),
    ] {
        let r = raw(gw.addr(), &get(target)).await;
        assert_eq!(r.status, 200, "{target:?}: {r:?}");
    }
    assert_eq!(a.hits(), 3);
}

#[tokio::test]
async fn servlet_path_parameters_cannot_step_past_a_deny_rule() {
    let (gw, a) = gateway().await;
    for target in [
        "/public/..;/admin",
        "/public/..;jsessionid=1/admin",
        "/public/%2e%2e;/admin",
        "/public/%2E%2e%3Bx/admin",
        "/public/.;/../admin",
    ] {
        let r = raw(gw.addr(), &get(target.as_bytes())).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (403, "denied"),
            "{target}: {r:?}"
        );
    }
    assert_eq!(a.hits(), 0, "none of them reached the upstream");
    // A `;` elsewhere is just data and is forwarded as written.
    let r = Client::http1(gw.addr()).get("x", "/a;v=1/b").await;
    assert_eq!(r.field("path"), Some("/a;v=1/b"));
}

#[tokio::test]
async fn an_escape_that_decoding_would_create_is_rejected() {
    // Found by the `path` fuzz target: one decoding pass turned `%%32e` into `%2e`, which the
    // backend would decode again to `.`, walking past the deny rule.
    let (gw, a) = gateway().await;
    for target in ["/public/%%32e%%32e/admin", "/%4%41dmin"] {
        raw(gw.addr(), &get(target.as_bytes()))
            .await
            .assert_local(400, "Bad Request", true);
    }
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn an_invalid_host_is_rejected_with_400() {
    let (gw, a) = gateway().await;
    for host in [
        b"a/admin?".as_slice(),
        b"a b",
        b"a\tb",
        b"a\"b",
        b"a<script>",
        b"a#b",
        b"a\\b",
        b"a{b}",
    ] {
        let req = [
            b"GET / HTTP/1.1\r\nHost: ".as_slice(),
            host,
            b"\r\nConnection: close\r\n\r\n",
        ]
        .concat();
        let r = raw(gw.addr(), &req).await;
        r.assert_local(400, "", false);
        assert_eq!(r.header("content-length"), Some("0"), "{r:?}");
    }
    let two = b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\nConnection: close\r\n\r\n";
    raw(gw.addr(), two).await.assert_local(400, "", false);
    assert_eq!(a.hits(), 0);
    // Valid authorities still work: names, ports, IPv6 literals, userinfo-like bytes.
    let c = Client::http1(gw.addr());
    for host in ["x", "x:8080", "[::1]:80", "a-b_c.example.com", "u@h"] {
        assert_eq!(c.get(host, "/ok").await.status, 200, "{host}");
    }
}

#[tokio::test]
async fn connect_is_rejected_and_never_relayed() {
    let (gw, a) = gateway().await;
    let r = raw(gw.addr(), b"CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n").await;
    r.assert_local(400, "Bad Request", true);
    let r = raw(gw.addr(), b"CONNECT http://x/y HTTP/1.1\r\nHost: x\r\n\r\n").await;
    r.assert_local(400, "Bad Request", true);
    // Authority-form: CONNECT is not enabled (Envoy's "upgrade failed" reply).
    let r = raw(gw.addr(), b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n").await;
    r.assert_local(403, "", true);
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn transfer_codings_other_than_chunked_get_501() {
    let (gw, a) = gateway().await;
    for te in [
        b"gzip, chunked".as_slice(),
        b"chunked, chunked",
        b"gzip\r\nTransfer-Encoding: chunked",
    ] {
        let req = [
            b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ".as_slice(),
            te,
            b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ]
        .concat();
        raw(gw.addr(), &req)
            .await
            .assert_local(501, "Not Implemented", true);
    }
    assert_eq!(a.hits(), 0);
    // Plain chunked still streams through.
    let r = raw(
        gw.addr(),
        b"POST /count HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("bytes=5"), "{r:?}");
}

#[tokio::test]
async fn ambiguous_framing_is_rejected_with_400() {
    let (gw, a) = gateway().await;
    for req in [
        // CL + TE, in both orders.
        b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".as_slice(),
        b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        // Duplicate identical Content-Length (Envoy rejects it too).
        b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    ] {
        raw(gw.addr(), req)
            .await
            .assert_local(400, "Bad Request", true);
    }
    // A list value is refused by hyper's parser itself (its own bare 400, before meshgate).
    let r = raw(
        gw.addr(),
        b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(a.hits(), 0);
    // The second request on a keep-alive connection is checked too (framing is followed).
    let r = raw(
        gw.addr(),
        b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nTE:\r\n0\r\nT: 1\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("bytes=3"), "{r:?}");
    assert!(r.body.contains("HTTP/1.1 400 Bad Request"), "{r:?}");
    assert_eq!(a.hits(), 1);
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_fault() {
    let (gw, _a) = gateway().await;
    // `/count` keeps the body for replay (default retry policy); `/once/count` streams it once.
    for (path, body) in [
        ("/count", b"zz\r\nhello\r\n0\r\n\r\n".as_slice()),
        ("/once/count", b"zz\r\nhello\r\n0\r\n\r\n"),
    ]
    .into_iter()
    .chain([
        (
            "/count",
            b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n".as_slice(),
        ),
        ("/once/count", b"5\r\nhelloXX0\r\n\r\n"),
        ("/count", b"5\r\nhelloXX0\r\n\r\n"),
    ]) {
        let req = [
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                .as_bytes(),
            body,
        ]
        .concat();
        let r = raw(gw.addr(), &req).await;
        assert_eq!(
            r.header("x-envoy-upstream-service-time"),
            None,
            "{path}: {r:?}"
        );
        r.assert_local(400, "Bad Request", true);
    }
    let r = Client::http1(gw.addr()).get("x", "/still-up").await;
    assert_eq!(r.status, 200);
}

/// An upstream that answers every request with a response carrying both CL and TE.
async fn ambiguous_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_upstream_response_with_cl_and_te_is_a_502() {
    let up = ambiguous_upstream().await;
    let yaml = gateway_yaml(&["*"])
        + &support::service_at("amb.svc", "HTTP", &[up])
        + &support::virtual_service("  - route: [{destination: {host: amb.svc}}]\n");
    let gw = TestGateway::start(&yaml).await;
    let r = raw(gw.addr(), &get(b"/x")).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(
        r.body,
        "upstream connect error or disconnect/reset before headers. reset reason: protocol error"
    );
    assert_eq!(r.header("server"), Some("istio-envoy"));
}

/// The protocol of a plain connection is told from its first bytes (`proxy/http_conn.rs`): a
/// request or an HTTP/2 preface that arrives in pieces, the first of them ambiguous, is still
/// served as what it is.
#[tokio::test]
async fn a_connection_whose_first_bytes_arrive_in_pieces_is_served() {
    let (gw, _a) = gateway().await;
    // HTTP/1: "P" could begin the HTTP/2 preface.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"P").await.unwrap();
    s.flush().await.unwrap();
    s.write_all(b"OST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the gateway did not answer")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.contains("method=POST"), "{text}");

    // HTTP/2 with prior knowledge, its preface in two writes: the gateway's SETTINGS come back.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    s.flush().await.unwrap();
    // The rest of the preface, then an empty SETTINGS frame.
    s.write_all(b"\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut frame = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut frame))
        .await
        .expect("the gateway did not answer")
        .unwrap();
    assert_eq!(frame[3], 0x04, "the first frame is SETTINGS: {frame:?}");
}
