//! Parked connections (issue 17 §3, memory per idle connection), against the real binary (its own
//! metrics): an HTTP/1 keep-alive connection quiet for `--park-idle-after` lets go of hyper's
//! connection and buffers, and its next request is served as if nothing happened: requests
//! pipelined behind it, a head arriving in pieces, the client closing, the idle timeout.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::binary::Binary;
use support::{gateway_yaml, static_service, Client, Upstream};

fn config(up: &Upstream) -> tempfile::TempDir {
    let yaml = gateway_yaml(&["*"])
        + &static_service("a.svc", &[(up, &[])])
        + &support::virtual_service("  - route: [{destination: {host: a.svc}}]\n");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    dir
}

/// The address in the binary's `port=<which>` log line.
fn ops_addr(bin: &Binary, which: &str) -> SocketAddr {
    let needle = format!("port={which}");
    let line = bin
        .read_lines()
        .into_iter()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| bin.wait_line(&needle));
    line.split("addr=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no addr= in {line:?}"))
}

/// `meshgate_downstream_cx_parked` of Gateway port 8080, from the binary's stats endpoint.
async fn parked(stats: SocketAddr) -> f64 {
    Client::http1(stats)
        .get("s", "/stats/prometheus")
        .await
        .body
        .lines()
        .find(|l| l.starts_with("meshgate_downstream_cx_parked{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Polls the parked gauge until it is `want` (at most 10 s).
async fn wait_parked(stats: SocketAddr, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = parked(stats).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "parked connections: {now}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads one response (head and `content-length` body) off `s`; its status and body.
async fn response(s: &mut TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("no response within 10 s")
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed mid-head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (status, String::from_utf8(body).unwrap())
}

fn request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: park-test\r\nAccept: */*\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_connection_is_parked_and_serves_its_next_requests() {
    let up = Upstream::start("a").await;
    let dir = config(&up);
    let bin = Binary::start(dir.path(), &["--park-idle-after", "0.05"]);
    let stats = ops_addr(&bin, "Stats");
    let mut s = TcpStream::connect(&bin.addr).await.unwrap();
    s.write_all(request("/one").as_bytes()).await.unwrap();
    let (status, body) = response(&mut s).await;
    assert_eq!(status, 200);
    assert!(body.contains("path=/one\n"), "{body}");
    wait_parked(stats, 1.0).await;

    // Two requests in one write, longer than what a parked connection reads first: the rest
    // of the first and all of the second come from hyper's own reads.
    let two = request(&format!("/two?{}", "q".repeat(100))) + &request("/three");
    s.write_all(two.as_bytes()).await.unwrap();
    assert_eq!(response(&mut s).await.0, 200);
    assert_eq!(response(&mut s).await.0, 200);
    wait_parked(stats, 1.0).await;

    // A head in two writes.
    let four = request("/four");
    let (a, b) = four.as_bytes().split_at(7);
    s.write_all(a).await.unwrap();
    s.flush().await.unwrap();
    s.write_all(b).await.unwrap();
    assert_eq!(response(&mut s).await.0, 200);
    wait_parked(stats, 1.0).await;

    let seen = up.seen();
    let paths: Vec<&str> = seen
        .iter()
        .filter_map(|r| r.lines().find_map(|l| l.strip_prefix("path=")))
        .collect();
    assert_eq!(
        paths,
        [
            "/one",
            &format!("/two?{}", "q".repeat(100)),
            "/three",
            "/four"
        ]
    );

    // The client closes a parked connection: its task ends.
    drop(s);
    wait_parked(stats, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_still_meets_the_idle_timeout() {
    let up = Upstream::start("a").await;
    let dir = config(&up);
    let bin = Binary::start(
        dir.path(),
        &["--park-idle-after", "0.05", "--idle-timeout", "0.5"],
    );
    let stats = ops_addr(&bin, "Stats");
    let mut s = TcpStream::connect(&bin.addr).await.unwrap();
    s.write_all(request("/").as_bytes()).await.unwrap();
    assert_eq!(response(&mut s).await.0, 200);
    wait_parked(stats, 1.0).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a parked connection outlived its idle timeout"
    );
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    wait_parked(stats, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_parking_off_a_quiet_connection_keeps_hyper() {
    let up = Upstream::start("a").await;
    let dir = config(&up);
    let bin = Binary::start(dir.path(), &["--park-idle-after", "0"]);
    let stats = ops_addr(&bin, "Stats");
    let mut s = TcpStream::connect(&bin.addr).await.unwrap();
    s.write_all(request("/").as_bytes()).await.unwrap();
    assert_eq!(response(&mut s).await.0, 200);
    // Nothing to wait for: the gauge must stay at zero while the connection is quiet; the
    // second request shows the connection was quiet long enough (0.3 s) to have parked.
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_millis(300) {
        assert_eq!(parked(stats).await, 0.0);
    }
    s.write_all(request("/").as_bytes()).await.unwrap();
    assert_eq!(response(&mut s).await.0, 200);
}
