//! The overload manager (issue 17 §3) over real sockets: past the shed threshold new requests get
//! Envoy's `503 envoy overloaded` (flag OM, `x-envoy-overloaded: true`, keep-alive off) without
//! reaching the upstream; past the refuse threshold new connections are closed unanswered; below
//! both, requests are served. Thresholds are set against the test process's own resident memory
//! (1 byte: always past; 1 TiB: never). HTTP/2 connections get a GOAWAY instead of `connection: close`.

use crate::support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use meshgate::proxy::OverloadLimits;
use support::{gateway_yaml, static_service, Client, TestGateway, Upstream};

async fn gateway(up: &Upstream, overload: OverloadLimits) -> TestGateway {
    let yaml = gateway_yaml(&["*"])
        + &static_service("a.svc", &[(up, &[])])
        + &support::virtual_service("  - route: [{destination: {host: a.svc}}]\n");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    TestGateway::try_start_with(dir, |s| s.limits.overload = overload)
        .await
        .unwrap_or_else(|e| panic!("gateway did not start: {e}"))
}

const TIB: u64 = 1 << 40;

/// Always past the shed threshold, never past the refuse one.
const SHEDDING: OverloadLimits = OverloadLimits {
    shed_memory: Some(1),
    refuse_memory: Some(TIB),
};

#[tokio::test]
async fn past_the_shed_threshold_new_requests_get_503_overloaded() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, SHEDDING).await;
    let r = Client::http1(gw.addr()).get("x", "/").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (503, "envoy overloaded")
    );
    assert_eq!(r.header("x-envoy-overloaded"), Some("true"));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(up.hits(), 0, "a shed request never reaches the upstream");
}

#[tokio::test]
async fn past_the_refuse_threshold_connections_are_closed_unanswered() {
    let up = Upstream::start("a").await;
    let gw = gateway(
        &up,
        OverloadLimits {
            shed_memory: None,
            refuse_memory: Some(1),
        },
    )
    .await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    // The write may fail once the close arrives; either way nothing comes back.
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("connection not closed within 10 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn below_the_thresholds_requests_are_served() {
    let up = Upstream::start("a").await;
    let gw = gateway(
        &up,
        OverloadLimits {
            shed_memory: Some(TIB),
            refuse_memory: Some(2 * TIB),
        },
    )
    .await;
    let r = Client::http1(gw.addr()).get("x", "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), None);
    assert_eq!(up.hits(), 1);
}

/// Over HTTP/2 the shed request gets the same 503 and the connection a GOAWAY (HTTP/2 has no
/// `connection: close`), so the client goes elsewhere instead of sending more here.
#[tokio::test]
async fn past_the_shed_threshold_http2_connections_get_a_goaway() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, SHEDDING).await;
    let tcp = TcpStream::connect(gw.addr()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/", gw.addr()))
        .header("host", "x")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.headers()
            .get("x-envoy-overloaded")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    drop(resp);
    // The GOAWAY ends the connection: its driver finishes (an open one would idle for an hour).
    let ended = tokio::time::timeout(Duration::from_secs(5), driver).await;
    assert!(ended.is_ok(), "the HTTP/2 connection is still open");
    assert_eq!(up.hits(), 0);
}
