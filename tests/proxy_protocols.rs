//! Protocols and bodies end to end: h2c downstream, streamed 50 MB bodies with bounded memory,
//! WebSocket upgrade, HTTP/1.0 and malformed requests, path normalisation, DNS destinations.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{gateway_yaml, static_service, Client, TestGateway, Upstream};

const MB: usize = 1024 * 1024;

async fn one_upstream(route: &str) -> (TestGateway, Upstream) {
    let a = Upstream::start("a").await;
    let yaml = gateway_yaml(&["*"])
        + &static_service("a.svc", &[(&a, &[])])
        + &format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n{route}");
    (TestGateway::start(&yaml).await, a)
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| {
            v.trim()
                .trim_end_matches(" kB")
                .trim()
                .parse::<usize>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[tokio::test]
async fn h2c_prior_knowledge_downstream() {
    let (gw, _a) = one_upstream("  - route: [{destination: {host: a.svc}}]\n").await;
    let c = Client::h2c(gw.addr());
    let r = c
        .send(
            c.request("ignored", "/h2")
                .version(http::Version::HTTP_2)
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream(), "a");
    // Upstream is HTTP/1.1 (service port protocol HTTP), with a Host header made from :authority.
    assert_eq!(r.field("version"), Some("HTTP/1.1"));
    assert_eq!(r.field("h:host"), Some(gw.addr().to_string().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_with_bounded_memory() {
    let (gw, _a) = one_upstream("  - route: [{destination: {host: a.svc}}]\n").await;
    let before = peak_rss();
    // 50 MB request body, generated chunk by chunk: never held whole by the client either.
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let chunks = 50 * MB / chunk.len();
    let stream = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(Frame::data(chunk.clone()))),
    );
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::post(format!("http://{}/count", gw.addr()))
        .header("host", "x")
        .body(StreamBody::new(stream))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), format!("bytes={}", 50 * MB));

    // 50 MB response body, read frame by frame.
    let req = http::Request::get(format!("http://{}/stream/{}", gw.addr(), 50 * MB))
        .header("host", "x")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let client2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let mut body = client2.request(req).await.unwrap().into_body();
    let mut total = 0;
    while let Some(f) = body.frame().await {
        total += f.unwrap().data_ref().map(|d| d.len()).unwrap_or(0);
    }
    assert_eq!(total, 50 * MB);
    // Client, gateway and upstream share this process: buffering either body whole would add
    // at least 50 MB to the peak.
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 30 * MB, "peak RSS grew by {} MB", grown / MB);
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled() {
    let (gw, _a) = one_upstream("  - route: [{destination: {host: a.svc}}]\n").await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed during the handshake");
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    // The upstream echoes upper-cased bytes over the upgraded connection.
    s.write_all(b"hello tunnel").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 12 {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&got, b"HELLO TUNNEL");
}

async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn http10_gets_426_and_bad_requests_get_400() {
    let (gw, a) = one_upstream("  - route: [{destination: {host: a.svc}}]\n").await;
    let r = raw(gw.addr(), b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await;
    assert!(
        r.starts_with("HTTP/1.0 426") || r.starts_with("HTTP/1.1 426"),
        "{r}"
    );
    assert!(r.ends_with("Upgrade Required"), "{r}");
    let r = raw(gw.addr(), b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400"), "missing Host: {r}");
    let r = raw(
        gw.addr(),
        b"GET /a%00b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "NUL in path: {r}");
    let r = raw(gw.addr(), b"THIS IS NOT HTTP\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400"), "garbage: {r}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let r = raw(gw.addr(), big.as_bytes()).await;
    assert!(
        r.starts_with("HTTP/1.1 431"),
        "oversized headers: {}",
        &r[..r.len().min(80)]
    );
    assert_eq!(a.hits(), 0, "none of these reached the upstream");
}

#[tokio::test]
async fn paths_are_normalised_before_routing_and_forwarding() {
    let (gw, _a) = one_upstream(
        "  - match: [{uri: {prefix: /public/}}]\n    route: [{destination: {host: a.svc}}]\n",
    )
    .await;
    let c = Client::http1(gw.addr());
    let r = c.get("x", "/public/../public/%61bc?q=/../x").await;
    assert_eq!(r.field("path"), Some("/public/abc?q=/../x"));
    assert_eq!(
        c.get("x", "/public/../private/secret").await.status,
        404,
        "dot-segments cannot escape the prefix"
    );
}

#[tokio::test]
async fn dns_service_entry_and_kubernetes_style_names_resolve() {
    let a = Upstream::start("a").await;
    let port = a.addr.port();
    let yaml = gateway_yaml(&["*"])
        + &format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: dns}}\nspec:\n  hosts: [dns.example]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: DNS\n  endpoints: [{{address: localhost, ports: {{http: {port}}}}}]\n---\n")
        + &format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - match: [{{uri: {{prefix: /dns}}}}]\n    route: [{{destination: {{host: dns.example}}}}]\n  - route: [{{destination: {{host: localhost, port: {{number: {port}}}}}}}]\n");
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("x", "/dns").await.upstream(), "a");
    // No ServiceEntry: `localhost` is tried as localhost.default.svc.cluster.local, then as written.
    assert_eq!(c.get("x", "/k8s").await.upstream(), "a");
}

#[tokio::test]
async fn http2_upstreams_get_the_client_host_as_authority_on_every_endpoint() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let yaml = gateway_yaml(&["*"])
        + &support::service_at("h2.svc", "HTTP2", &[a.addr, b.addr])
        + &support::destination_rule("h2.svc", "{loadBalancer: {simple: ROUND_ROBIN}}")
        + &support::virtual_service("  - route: [{destination: {host: h2.svc}}]\n");
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    for _ in 0..10 {
        let r = c.get("shop.example.com:8080", "/h2").await;
        assert_eq!(r.field("version"), Some("HTTP/2.0"));
        assert_eq!(r.field("authority"), Some("shop.example.com:8080"));
        assert_eq!(
            r.field("h:host"),
            None,
            "no separate host header over HTTP/2"
        );
    }
    // Per-endpoint clients keep endpoint choice intact: round robin reaches both.
    assert_eq!((a.hits(), b.hits()), (5, 5));
}

#[tokio::test]
async fn grpc_requests_get_trailers_only_local_replies() {
    let dead = support::closed_addr();
    let yaml = gateway_yaml(&["*"])
        + &support::service_at("dead.svc", "HTTP2", &[dead])
        + &support::virtual_service(
            "  - match: [{uri: {prefix: /pkg.Svc/}}]\n    route: [{destination: {host: dead.svc}}]\n",
        );
    let gw = TestGateway::start(&yaml).await;
    let c = Client::h2c(gw.addr());
    let call = |path: &'static str| {
        c.request("x", path)
            .method("POST")
            .version(http::Version::HTTP_2)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Default::default())
            .unwrap()
    };
    // No route: HTTP 404 becomes grpc-status 12 (UNIMPLEMENTED).
    let r = c.send(call("/other.Svc/Get")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/grpc"));
    assert_eq!(r.header("grpc-status"), Some("12"));
    // Connect failure: 503 becomes 14 (UNAVAILABLE), the Envoy body percent-encoded in grpc-message.
    let r = c.send(call("/pkg.Svc/Get")).await;
    assert_eq!(r.header("grpc-status"), Some("14"));
    let msg = r.header("grpc-message").unwrap_or("");
    assert!(
        msg.starts_with("upstream connect error or disconnect/reset before headers."),
        "{msg}"
    );
    // A plain HTTP request on the same route still gets the HTTP reply.
    let plain = Client::http1(gw.addr()).get("x", "/other.Svc/Get").await;
    assert_eq!(plain.status, 404);
}

#[tokio::test]
async fn garbage_on_the_wire_never_takes_the_gateway_down() {
    use rand::{Rng, SeedableRng};
    let (gw, _a) = one_upstream("  - route: [{destination: {host: a.svc}}]\n").await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let pieces: &[&[u8]] = &[
        b"GET ",
        b"POST ",
        b"/",
        b"%00",
        b"%zz",
        b"/../",
        b" HTTP/1.1\r\n",
        b" HTTP/2.0\r\n",
        b"Host: x\r\n",
        b"Host:\r\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: -1\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"0\r\n\r\n",
        b"zz\r\n",
        b"\r\n",
        b"\x00\xff\xfe",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"Upgrade: websocket\r\nConnection: upgrade\r\n",
        b"Expect: 100-continue\r\n",
        b":authority: x\r\n",
    ];
    for _ in 0..300 {
        let mut msg = Vec::new();
        for _ in 0..rng.gen_range(1..12) {
            msg.extend_from_slice(pieces[rng.gen_range(0..pieces.len())]);
        }
        if rng.gen_bool(0.3) {
            msg.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>()));
        }
        let mut s = TcpStream::connect(gw.addr()).await.unwrap();
        let _ = s.write_all(&msg).await;
        let _ = s.shutdown().await;
        let mut sink = Vec::new();
        // Whatever the gateway answers (or not), it must answer within the bound and stay up.
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut sink)).await;
    }
    let r = Client::http1(gw.addr()).get("x", "/still-up").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream(), "a");
}
