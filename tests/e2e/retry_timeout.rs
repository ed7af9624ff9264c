//! Retries and timeouts end to end, against upstreams that misbehave on command: every `retryOn`
//! condition retried or not, Istio's default policy, attempts to other endpoints, request body
//! replay, `perTryTimeout` and the route `timeout`.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use support::{
    closed_addr, destination_rule, gateway_yaml, service_at, virtual_service, Client, Mode,
    TestGateway, Upstream,
};

const ROUND_ROBIN: &str = "{loadBalancer: {simple: ROUND_ROBIN}}";

/// A gateway routing everything to `a.svc` (the given addresses) with the given route extras.
async fn gateway(addrs: &[std::net::SocketAddr], protocol: &str, extras: &str) -> TestGateway {
    let yaml = gateway_yaml(&["*"])
        + &service_at("a.svc", protocol, addrs)
        + &destination_rule("a.svc", ROUND_ROBIN)
        + &virtual_service(&format!(
            "  - route: [{{destination: {{host: a.svc}}}}]\n{extras}"
        ));
    TestGateway::start(&yaml).await
}

#[tokio::test]
async fn default_policy_retries_connect_failures_on_another_endpoint() {
    let live = Upstream::start("live").await;
    let gw = gateway(&[closed_addr(), live.addr], "HTTP", "").await;
    let c = Client::http1(gw.addr());
    let mut second_attempts = 0;
    for _ in 0..20 {
        let r = c.get("x", "/").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.upstream(), "live");
        if r.field("h:x-envoy-attempt-count") == Some("2") {
            second_attempts += 1;
        }
    }
    // Round robin moves on with each attempt, so first attempts keep meeting the closed port.
    assert!(
        second_attempts >= 10,
        "{second_attempts} requests needed a retry"
    );
    assert_eq!(live.hits(), 20);
}

#[tokio::test]
async fn default_policy_does_not_retry_an_upstream_503_or_a_reset() {
    let a = Upstream::start("a").await;
    let gw = gateway(&[a.addr], "HTTP", "").await;
    let c = Client::http1(gw.addr());
    let r = c.get("x", "/status/503").await;
    assert_eq!((r.status.as_u16(), r.upstream()), (503, "a"));
    assert_eq!(a.hits(), 1);
    let r = c.get("x", "/reset").await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
    );
    // The reset came on the keep-alive connection of the first request: to meshgate that is the
    // keep-alive race (an idle connection closed under a GET), so the GET went once more on a
    // fresh connection, whose reset is final. Not a retry: no retry policy ran.
    assert_eq!(a.hits(), 3);
}

/// Sends `path` through a route with `retryOn: <on>` and 2 retries; returns (status, hits).
async fn retried(on: &str, path: &str) -> (u16, usize) {
    let a = Upstream::start("a").await;
    let extras = format!("    retries: {{attempts: 2, retryOn: \"{on}\"}}\n");
    let gw = gateway(&[a.addr], "HTTP", &extras).await;
    let r = Client::http1(gw.addr()).get("x", path).await;
    (r.status.as_u16(), a.hits())
}

#[tokio::test]
async fn each_retry_on_condition_is_retried_or_not() {
    // (retryOn, path, final status, upstream hits)
    let cases: &[(&str, &str, u16, usize)] = &[
        ("5xx", "/fail/1/500/k", 200, 2),
        ("5xx", "/fail/5/503/k", 503, 3),
        ("5xx", "/status/404", 404, 1),
        ("5xx", "/reset", 503, 3),
        ("gateway-error", "/fail/1/502/k", 200, 2),
        ("gateway-error", "/fail/1/504/k", 200, 2),
        ("gateway-error", "/status/500", 500, 1),
        ("gateway-error", "/reset", 503, 3),
        ("reset", "/reset", 503, 3),
        ("reset", "/status/503", 503, 1),
        ("connect-failure", "/reset", 503, 1),
        ("connect-failure", "/status/503", 503, 1),
        ("retriable-4xx", "/fail/1/409/k", 200, 2),
        ("retriable-4xx", "/status/404", 404, 1),
        ("418,504", "/fail/1/418/k", 200, 2),
        ("418,504", "/status/503", 503, 1),
        ("retriable-status-codes,429", "/fail/1/429/k", 200, 2),
        ("envoy-ratelimited", "/ratelimited", 429, 3),
        ("unavailable", "/grpc/14", 200, 3),
        ("unavailable", "/grpc/13", 200, 1),
        ("internal", "/grpc/13", 200, 3),
        ("cancelled", "/grpc/1", 200, 3),
        ("deadline-exceeded", "/grpc/4", 200, 3),
        ("resource-exhausted", "/grpc/8", 200, 3),
    ];
    for (on, path, status, hits) in cases {
        assert_eq!(
            retried(on, path).await,
            (*status, *hits),
            "retryOn {on} on {path}"
        );
    }
}

#[tokio::test]
async fn connect_failure_conditions_against_a_closed_port() {
    for (on, retried) in [
        ("connect-failure", true),
        ("reset", true),
        ("5xx", true),
        ("reset-before-request", true),
        ("retriable-4xx", false),
    ] {
        let extras = format!("    retries: {{attempts: 2, retryOn: \"{on}\"}}\n");
        let gw = gateway(&[closed_addr()], "HTTP", &extras).await;
        let r = Client::http1(gw.addr()).get("x", "/").await;
        assert_eq!(r.status, 503);
        let prefix = if retried {
            "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure"
        } else {
            "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"
        };
        assert!(r.body.starts_with(prefix), "{on}: {}", r.body);
    }
}

#[tokio::test]
async fn refused_streams_are_retried_by_default() {
    let h2 = Upstream::start_h2_refusing("h2").await;
    let gw = gateway(&[h2.addr], "HTTP2", "").await;
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("x", "/ok").await.upstream(), "h2");
    let r = c.get("x", "/refuse").await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote refused stream reset"
    );
    assert_eq!(h2.hits(), 1 + 3, "default policy: 2 retries");
    // connect-failure alone does not cover a refused stream.
    let gw = gateway(
        &[h2.addr],
        "HTTP2",
        "    retries: {attempts: 2, retryOn: connect-failure}\n",
    )
    .await;
    let r = Client::http1(gw.addr()).get("x", "/refuse").await;
    assert_eq!(r.status, 503);
    assert_eq!(h2.hits(), 4 + 1);
}

#[tokio::test]
async fn retries_count_attempts_and_go_to_another_endpoint() {
    let (bad, good) = (Upstream::start("bad").await, Upstream::start("good").await);
    bad.set_mode(Mode::Status(503));
    let gw = gateway(
        &[bad.addr, good.addr],
        "HTTP",
        "    retries: {attempts: 1, retryOn: 5xx}\n",
    )
    .await;
    let c = Client::http1(gw.addr());
    for _ in 0..20 {
        let r = c.get("x", "/").await;
        assert_eq!((r.status.as_u16(), r.upstream()), (200, "good"));
    }
    assert!(
        bad.hits() >= 10,
        "round robin sends first attempts to bad too"
    );
    // Single endpoint: the retry has nowhere else to go and uses it again.
    let solo = Upstream::start("solo").await;
    let gw = gateway(
        &[solo.addr],
        "HTTP",
        "    retries: {attempts: 3, retryOn: 5xx}\n",
    )
    .await;
    let r = Client::http1(gw.addr()).get("x", "/fail/3/500/solo").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.field("h:x-envoy-attempt-count"), Some("4"));
}

#[tokio::test]
async fn attempts_zero_disables_retries() {
    let extras = "    retries: {attempts: 0}\n";
    let gw = gateway(&[closed_addr()], "HTTP", extras).await;
    let r = Client::http1(gw.addr()).get("x", "/").await;
    assert!(
        r.body.starts_with("upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn small_bodies_are_replayed_large_ones_are_not() {
    let a = Upstream::start("a").await;
    let gw = gateway(
        &[a.addr],
        "HTTP",
        "    retries: {attempts: 2, retryOn: 5xx}\n",
    )
    .await;
    let c = Client::http1(gw.addr());
    let post = |path: &str, len: usize| {
        c.request("x", path)
            .method("POST")
            .body(Full::new(Bytes::from(vec![b'x'; len])))
            .unwrap()
    };
    let r = c.send(post("/fail/1/503/small", 100 * 1024)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.field("bytes"), Some("102400"));
    assert_eq!(r.field("h:x-envoy-attempt-count"), Some("2"));
    // 2 MiB went upstream before the 503: more than can be replayed, so no retry.
    let before = a.hits();
    let r = c.send(post("/fail/1/503/large", 2 * 1024 * 1024)).await;
    assert_eq!((r.status.as_u16(), a.hits() - before), (503, 1));
}

#[tokio::test]
async fn per_try_timeout_is_retried_then_504() {
    let a = Upstream::start("a").await;
    a.set_mode(Mode::Hang);
    let gw = gateway(
        &[a.addr],
        "HTTP",
        "    retries: {attempts: 2, perTryTimeout: 100ms, retryOn: 5xx}\n",
    )
    .await;
    let start = std::time::Instant::now();
    let r = Client::http1(gw.addr()).get("x", "/").await;
    let took = start.elapsed();
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (504, "upstream request timeout")
    );
    assert_eq!(a.hits(), 3);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn per_try_timeout_moves_to_a_healthy_endpoint() {
    let (slow, fast) = (Upstream::start("slow").await, Upstream::start("fast").await);
    slow.set_mode(Mode::Hang);
    let gw = gateway(
        &[slow.addr, fast.addr],
        "HTTP",
        "    retries: {attempts: 1, perTryTimeout: 100ms, retryOn: reset}\n",
    )
    .await;
    let c = Client::http1(gw.addr());
    for _ in 0..6 {
        let r = c.get("x", "/").await;
        assert_eq!((r.status.as_u16(), r.upstream()), (200, "fast"));
        assert_eq!(
            r.field("h:x-envoy-expected-rq-timeout-ms")
                .map(|v| v.parse::<u64>().unwrap() <= 100),
            Some(true)
        );
    }
    // Per-try timeouts are not retried under connect-failure only.
    let gw = gateway(
        &[slow.addr],
        "HTTP",
        "    retries: {attempts: 2, perTryTimeout: 50ms, retryOn: connect-failure}\n",
    )
    .await;
    let before = slow.hits();
    let r = Client::http1(gw.addr()).get("x", "/").await;
    assert_eq!(r.status, 504);
    assert_eq!(slow.hits() - before, 1);
}

#[tokio::test]
async fn route_timeout_caps_every_attempt_and_the_response_body() {
    let a = Upstream::start("a").await;
    let gw = gateway(
        &[a.addr],
        "HTTP",
        "    timeout: 300ms\n    retries: {attempts: 10, perTryTimeout: 100ms, retryOn: 5xx}\n",
    )
    .await;
    let c = Client::http1(gw.addr());
    let start = std::time::Instant::now();
    let r = c.get("x", "/hang").await;
    let took = start.elapsed();
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (504, "upstream request timeout")
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(
        a.hits() <= 4,
        "{} attempts in 300 ms of 100 ms tries",
        a.hits()
    );
    // The timeout also covers the response body: headers came, the body stalls, the stream resets.
    let r = c.try_get("x", "/stall").await;
    assert!(
        r.is_err(),
        "a stalled body must be cut at the route timeout: {r:?}"
    );
    // A fast response is untouched.
    assert_eq!(c.get("x", "/slow/10").await.status, 200);
}

#[tokio::test]
async fn route_timeout_without_retries_on_timeouts() {
    let a = Upstream::start("a").await;
    let gw = gateway(&[a.addr], "HTTP", "    timeout: 200ms\n").await;
    let start = std::time::Instant::now();
    let r = Client::http1(gw.addr()).get("x", "/slow/3000").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (504, "upstream request timeout")
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(a.hits(), 1, "the default policy does not retry timeouts");
}

#[tokio::test]
async fn route_timeout_starts_when_the_request_body_ends() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Upstream::start("a").await;
    let gw = gateway(&[a.addr], "HTTP", "    timeout: 300ms\n").await;
    // A slow upload: 3 chunks 250 ms apart, 750 ms in all, longer than the route timeout.
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(
        b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    for _ in 0..3 {
        s.write_all(&[b'z'; 10]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("response")
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("bytes=30"), "{out}");
}
