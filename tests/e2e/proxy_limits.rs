//! Downstream limits and timeouts (issue 17 §3), over real sockets: the listen backlog, accept
//! failures when out of file descriptors (the real binary under a low `RLIMIT_NOFILE`), HTTP/2
//! header list size, request headers / stream idle / idle timeouts, max connection duration, max
//! requests per connection and max connections.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::binary::{get, Binary};
use support::{gateway_yaml, static_service, Client, Mode, TestGateway, Upstream};

/// A gateway answering `/hello` directly (200) and sending everything else to `up`, with
/// `limits` adjusted.
async fn gateway(up: &Upstream, adjust: impl FnOnce(&mut meshgate::proxy::Limits)) -> TestGateway {
    let yaml = gateway_yaml(&["*"])
        + &static_service("a.svc", &[(up, &[])])
        + &support::virtual_service(
            "  - match: [{uri: {exact: /hello}}]\n    directResponse: {status: 200, body: {string: hello}}\n  - route: [{destination: {host: a.svc}}]\n",
        );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    TestGateway::try_start_with(dir, |s| adjust(&mut s.limits))
        .await
        .unwrap_or_else(|e| panic!("gateway did not start: {e}"))
}

const HELLO: &[u8] = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";

/// Reads one `content-length` response off a keep-alive connection (bounded); its head, lower-cased.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    return head.to_owned();
                }
            }
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed mid-response: {text:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    read.expect("no complete response within 10 s")
}

/// Waits (at most `limit`) for the peer to close; how long that took from `since`.
async fn closed_within(s: &mut TcpStream, limit: Duration, since: Instant) -> Option<Duration> {
    let mut rest = Vec::new();
    match tokio::time::timeout(limit, s.read_to_end(&mut rest)).await {
        Ok(_) => {
            assert!(rest.is_empty(), "unexpected bytes before close: {rest:?}");
            Some(since.elapsed())
        }
        Err(_) => None,
    }
}

/// `Send-Q` of the listening socket on `addr`: its backlog, as `ss` shows it.
fn listen_backlog(addr: SocketAddr) -> u32 {
    let out = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{}", addr.port())])
        .output()
        .expect("run ss");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no listener in {text:?}"));
    line.split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Send-Q in {line:?}"))
}

#[tokio::test]
async fn listen_backlog_is_4096_and_takes_a_burst_of_1000_connections() {
    let _heavy = support::exclusive();
    let up = Upstream::start("a").await;
    let gw = gateway(&up, |_| {}).await;
    assert_eq!(listen_backlog(gw.addr()), 4096);
    let small = gateway(&up, |l| l.listen_backlog = 300).await;
    assert_eq!(listen_backlog(small.addr()), 300);

    // 1,000 clients at once: every one connects and is answered, none waits for a SYN retransmit.
    let addr = gw.addr();
    let started = Instant::now();
    let clients: Vec<_> = (0..1000)
        .map(|_| {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.write_all(HELLO).await.unwrap();
                read_response(&mut s).await
            })
        })
        .collect();
    for c in clients {
        let head = tokio::time::timeout(Duration::from_secs(20), c)
            .await
            .expect("burst not served within 20 s")
            .unwrap();
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn out_of_file_descriptors_backs_off_logs_once_a_second_and_recovers() {
    let _heavy = support::exclusive();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let gw = Binary::start_with_nofile(
        64,
        config.as_ref(),
        &["--no-watch", "--access-log-format", "off"],
    );
    // More connections than descriptors: the kernel completes them into the backlog, meshgate
    // accepts until EMFILE.
    let held: Vec<_> = (0..200)
        .map(|i| {
            std::net::TcpStream::connect(&gw.addr)
                .unwrap_or_else(|e| panic!("connection {i} to the gateway: {e}"))
        })
        .collect();
    let first = gw.wait_line("accept failed");
    assert!(first.contains("gateway_port=8080"), "{first}");
    // Out of descriptors for 3 s: at most one line a second (the old loop logged thousands).
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines = gw.take_lines();
    let failed = lines.iter().filter(|l| l.contains("accept failed")).count();
    assert!(
        (1..=5).contains(&failed),
        "{failed} accept failures logged in 3 s: {:?}",
        &lines[..lines.len().min(5)]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("suppressed=") && !l.contains("suppressed=0")),
        "no suppressed count in {:?}",
        &lines[..lines.len().min(5)]
    );
    // Connections close, descriptors come back: served again within a few back-offs.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = std::panic::catch_unwind(|| get(&gw.addr, "/hello")).unwrap_or_default();
        if r.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "not serving again: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gw.take_lines().len() < 20);
}

#[tokio::test]
async fn h2_takes_the_same_60_kib_of_headers_as_http1() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, |_| {}).await;
    for client in [Client::h2c(gw.addr()), Client::http1(gw.addr())] {
        let send = |size: usize| {
            client.send(
                client
                    .request("x", "/hello")
                    .header("x-big", "a".repeat(size))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
        };
        let r = send(20 * 1024).await;
        assert_eq!(r.status, 200, "20 KiB: {r:?}");
        // Past 60 KiB: Envoy's 431, from the same check for both protocols.
        let r = send(64 * 1024).await;
        assert_eq!(r.status, 431, "64 KiB: {r:?}");
        assert_eq!(r.header("server"), Some("istio-envoy"), "{r:?}");
        assert_eq!(r.body, "Request Header Fields Too Large");
        // Far past it, hyper's HTTP/1 buffer (68 KiB) answers a bare 431 first; h2 still ours.
        let r = send(70 * 1024).await;
        assert_eq!(r.status, 431, "70 KiB: {r:?}");
    }
}

/// Sends the start of a request head and nothing more; reads until the gateway closes. The reply
/// (lowercase) and the time from sending to the close.
async fn unfinished_head(s: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("not closed within 10 s")
        .unwrap();
    let elapsed = started.elapsed();
    (String::from_utf8_lossy(&out).to_ascii_lowercase(), elapsed)
}

#[tokio::test]
async fn slow_request_head_gets_408_and_close() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, |l| {
        l.request_headers_timeout = Some(Duration::from_millis(200))
    })
    .await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    let (text, elapsed) = unfinished_head(&mut s).await;
    assert!(
        text.starts_with("http/1.1 408 request timeout\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    assert!(text.contains("\r\nserver: istio-envoy\r\n"), "{text}");
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
}

#[tokio::test]
async fn keep_alive_wait_is_not_a_slow_head() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, |l| {
        l.request_headers_timeout = Some(Duration::from_millis(200))
    })
    .await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(HELLO).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("http/1.1 200"));
    // Idle three times the headers timeout (hyper's own timeout closed such a connection).
    assert_eq!(
        closed_within(&mut s, Duration::from_millis(600), Instant::now()).await,
        None,
        "an idle keep-alive connection was closed by the request headers timeout"
    );
    s.write_all(HELLO).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("http/1.1 200"));
}

/// The head timer is not reset per request: armed for the first head, it fires while the second
/// head is being read, and must then wait for the second head's own deadline.
#[tokio::test]
async fn a_later_slow_head_gets_its_whole_timeout() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, |l| {
        l.request_headers_timeout = Some(Duration::from_millis(300))
    })
    .await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(HELLO).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("http/1.1 200"));
    // Part of a second head, well inside the first head's 300 ms: the timer armed for the first
    // fires first, about 150 ms into this one.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (text, elapsed) = unfinished_head(&mut s).await;
    assert!(
        text.starts_with("http/1.1 408 request timeout\r\n"),
        "{text}"
    );
    assert!(
        elapsed >= Duration::from_millis(300),
        "408 after {elapsed:?}, before the second head's own 300 ms"
    );
}

#[tokio::test]
async fn idle_connection_is_closed_after_the_idle_timeout() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, |l| l.idle_timeout = Some(Duration::from_millis(200))).await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(HELLO).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("http/1.1 200"));
    let idle_since = Instant::now();
    let closed = closed_within(&mut s, Duration::from_secs(5), idle_since).await;
    let after = closed.expect("idle connection not closed within 5 s");
    assert!(
        after >= Duration::from_millis(200),
        "closed after {after:?}"
    );

    // A request in flight is not idle: an upstream slower than the idle timeout still answers.
    let slow = Upstream::start("slow").await;
    slow.set_mode(Mode::Hang);
    let gw = gateway(&slow, |l| l.idle_timeout = Some(Duration::from_millis(200))).await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        closed_within(&mut s, Duration::from_millis(600), Instant::now()).await,
        None,
        "a connection with a request in flight was closed as idle"
    );
}

#[tokio::test]
async fn stream_idle_timeout_answers_408() {
    let slow = Upstream::start("slow").await;
    slow.set_mode(Mode::Hang);
    let gw = gateway(&slow, |l| {
        l.stream_idle_timeout = Some(Duration::from_millis(200))
    })
    .await;
    let started = Instant::now();
    let r = Client::http1(gw.addr()).get("x", "/x").await;
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(r.body, "stream timeout");
    assert_eq!(r.header("server"), Some("istio-envoy"));
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn max_connection_duration_closes_the_connection() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, |l| {
        l.max_connection_duration = Some(Duration::from_millis(300))
    })
    .await;
    let opened = Instant::now();
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(HELLO).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("http/1.1 200"));
    let after = closed_within(&mut s, Duration::from_secs(5), opened)
        .await
        .expect("not closed within 5 s");
    assert!(
        after >= Duration::from_millis(300),
        "closed after {after:?}"
    );
}

#[tokio::test]
async fn max_requests_per_connection_closes_http1_on_the_nth() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, |l| l.max_requests_per_connection = Some(3)).await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    for i in 1..=3 {
        s.write_all(HELLO).await.unwrap();
        let head = read_response(&mut s).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(
            head.contains("\r\nconnection: close"),
            i == 3,
            "request {i}: {head}"
        );
    }
    closed_within(&mut s, Duration::from_secs(5), Instant::now())
        .await
        .expect("not closed after the 3rd response");
}

#[tokio::test]
async fn max_requests_per_connection_sends_goaway_on_h2() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, |l| l.max_requests_per_connection = Some(3)).await;
    let tcp = TcpStream::connect(gw.addr()).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    for _ in 0..3 {
        client = client.ready().await.unwrap();
        let req = http::Request::get(format!("http://{}/hello", gw.addr()))
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        assert_eq!(resp.await.unwrap().status(), 200);
    }
    // The GOAWAY ends the connection once its streams are done.
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "no GOAWAY after the 3rd request");
}

#[tokio::test]
async fn max_connections_closes_the_overflow_and_serves_the_rest() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, |l| l.max_connections = Some(5))
        .await
        .with_ops()
        .await;
    let addr = gw.addr();
    let mut open = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(HELLO).await.unwrap();
        assert!(read_response(&mut s).await.starts_with("http/1.1 200"));
        open.push(s);
    }
    // 5 more: accepted and closed at once, no response.
    for _ in 0..5 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(HELLO).await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        let read = read.expect("overflow connection not closed within 5 s");
        assert!(
            read.is_err() || out.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
    }
    // The first five are still served.
    for s in &mut open {
        s.write_all(HELLO).await.unwrap();
        assert!(read_response(s).await.starts_with("http/1.1 200"));
    }
    let stats = Client::http1(gw.ops(meshgate::OpsPort::Stats))
        .get("s", "/stats/prometheus")
        .await
        .body;
    // Summed over listeners: every gateway in this process shares the metrics recorder.
    let overflow: f64 = stats
        .lines()
        .filter(|l| l.starts_with("meshgate_downstream_cx_overflow_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(overflow >= 5.0, "{overflow}");
    // One closes: a new connection gets its place (the close is seen asynchronously).
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(HELLO).await.unwrap();
        let mut buf = [0u8; 12];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        if matches!(n, Ok(Ok(12))) && &buf == b"HTTP/1.1 200" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no place after a connection closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
