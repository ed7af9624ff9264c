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

/// Resident memory of process `pid`, a `/proc/<pid>/status` field (`VmRSS`, `VmHWM`), in bytes.
fn proc_memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no {field} for pid {pid}"))
}

/// What one flood connection got: the gateway's answer, if any, before the test let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flooded {
    /// Forwarded: the upstream is waiting for the rest of the body.
    Held,
    /// `503 envoy overloaded` (past the shed threshold).
    Shed,
    /// Closed unanswered (past the refuse threshold).
    Refused,
}

/// A bounded flood under a memory cap, against the real binary: 1,500 connections at once, each
/// a 1 MB upload that stalls after 32 KiB (a slow-body client; the upstream waits for the rest).
/// Without the overload manager every one of them is forwarded and held, and the gateway grows
/// by tens of MiB. With `--overload-shed-memory` and `--overload-refuse-memory` set a few MiB
/// above the gateway's own idle memory, its peak resident memory (VmHWM) stays under the refuse
/// threshold plus one sampling step's worth, the flood is shed and refused, and once the flood
/// lets go the gateway serves normal requests again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_slow_uploads_stays_under_the_memory_cap_and_the_gateway_recovers() {
    use support::binary::Binary;
    let _heavy = support::exclusive();
    const FLOOD: usize = 1500;
    const MIB: u64 = 1 << 20;

    let up = Upstream::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = gateway_yaml(&["*"])
        + &static_service("a.svc", &[(&up, &[])])
        + &support::virtual_service("  - route: [{destination: {host: a.svc}}]\n");
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();

    // The gateway's idle memory, served one request (this build, this config).
    let idle = {
        let bin = Binary::start(dir.path(), &[]);
        let addr = bin.addr.clone();
        let r = tokio::task::spawn_blocking(move || support::binary::get(&addr, "/"))
            .await
            .unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        proc_memory(bin.pid(), "VmRSS")
    };
    let shed = idle + 6 * MIB;
    let refuse = idle + 12 * MIB;
    let bin = Binary::start(
        dir.path(),
        &[
            "--overload-shed-memory",
            &shed.to_string(),
            "--overload-refuse-memory",
            &refuse.to_string(),
        ],
    );
    let addr = bin.addr.clone();

    let head = b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n";
    let chunk = vec![b'x'; 32 * 1024];
    let flood = (0..FLOOD).map(|_| {
        let addr = addr.clone();
        let chunk = chunk.clone();
        tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(&addr).await else {
                return (Flooded::Refused, None);
            };
            if s.write_all(head).await.is_err() || s.write_all(&chunk).await.is_err() {
                return (Flooded::Refused, None);
            }
            // An answer comes at once (shed) or the close does (refused); a held upload gets
            // nothing until its body is complete, so the wait for it is bounded.
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
                    assert!(text.contains("x-envoy-overloaded: true"), "{text}");
                    (Flooded::Shed, None)
                }
                Ok(_) => (Flooded::Refused, None),
                Err(_) => (Flooded::Held, Some(s)),
            }
        })
    });
    let results = futures_util::future::join_all(flood).await;
    let peak = proc_memory(bin.pid(), "VmHWM");
    let count = |k| {
        results
            .iter()
            .filter(|r| r.as_ref().unwrap().0 == k)
            .count()
    };
    let (held, shed_n, refused) = (
        count(Flooded::Held),
        count(Flooded::Shed),
        count(Flooded::Refused),
    );
    eprintln!(
        "idle {} KiB, shed at {} KiB, refuse at {} KiB, peak {} KiB; held {held}, shed {shed_n}, refused {refused}",
        idle / 1024,
        shed / 1024,
        refuse / 1024,
        peak / 1024
    );
    assert!(held > 0, "no upload was forwarded");
    assert!(shed_n + refused > 0, "the flood never reached a threshold");
    assert!(
        peak <= refuse + 4 * MIB,
        "peak {} KiB past the refuse threshold {} KiB (+4 MiB)",
        peak / 1024,
        refuse / 1024
    );

    // The flood lets go: memory eases and normal requests are served again.
    drop(results);
    let let_go = std::time::Instant::now();
    let deadline = let_go + Duration::from_secs(30);
    loop {
        let a = addr.clone();
        let r = tokio::task::spawn_blocking(move || support::binary::try_get(&a, "/"))
            .await
            .unwrap();
        match r {
            Ok(r) if r.starts_with("HTTP/1.1 200") => break,
            r => assert!(
                std::time::Instant::now() < deadline,
                "still not serving 30 s after the flood: {r:?}, resident {} KiB",
                proc_memory(bin.pid(), "VmRSS") / 1024
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "serving again {:?} after the flood let go, resident {} KiB",
        let_go.elapsed(),
        proc_memory(bin.pid(), "VmRSS") / 1024
    );
}
