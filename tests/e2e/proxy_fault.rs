//! Fault injection end to end: aborts (HTTP and gRPC) and delays, at 100 %, at a percentage
//! (statistical, wide bounds) and without a percentage (never).

use crate::support;

use std::time::{Duration, Instant};

use support::{gateway_yaml, static_service, virtual_service, Client, TestGateway, Upstream};

async fn gateway(up: &Upstream, fault: &str) -> TestGateway {
    let yaml = gateway_yaml(&["*"])
        + &static_service("a.svc", &[(up, &[])])
        + &virtual_service(&format!(
            "  - route: [{{destination: {{host: a.svc}}}}]\n    fault: {fault}\n"
        ));
    TestGateway::start(&yaml).await
}

#[tokio::test]
async fn abort_answers_with_the_configured_status() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, "{abort: {httpStatus: 418, percentage: {value: 100}}}").await;
    let r = Client::http1(gw.addr()).get("x", "/").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (418, "fault filter abort")
    );
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn grpc_abort_is_a_trailers_only_reply() {
    let up = Upstream::start("a").await;
    let gw = gateway(
        &up,
        "{abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}",
    )
    .await;
    let r = Client::http1(gw.addr()).get("x", "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), Some("14"));
    assert_eq!(r.header("content-type"), Some("application/grpc"));
    assert_eq!(r.header("grpc-message"), Some("fault filter abort"));
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn abort_percentage_is_honoured() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, "{abort: {httpStatus: 503, percentage: {value: 30}}}").await;
    let c = Client::http1(gw.addr());
    let n = 1000;
    let mut aborted = 0;
    for _ in 0..n {
        let r = c.get("x", "/").await;
        if r.body == "fault filter abort" {
            aborted += 1;
        }
    }
    // Binomial(1000, 0.3): sd ≈ 14.5; ±7 sd.
    assert!((200..=400).contains(&aborted), "{aborted} of {n} aborted");
    assert_eq!(up.hits(), n - aborted);
}

#[tokio::test]
async fn no_percentage_never_fires() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, "{abort: {httpStatus: 500}, delay: {fixedDelay: 5s}}").await;
    let c = Client::http1(gw.addr());
    let start = Instant::now();
    for _ in 0..50 {
        assert_eq!(c.get("x", "/").await.status, 200);
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "no request was delayed"
    );
    assert_eq!(up.hits(), 50);
}

#[tokio::test]
async fn delay_then_abort() {
    let up = Upstream::start("a").await;
    let gw = gateway(
        &up,
        "{delay: {fixedDelay: 200ms, percentage: {value: 100}}, abort: {httpStatus: 429, percentage: {value: 100}}}",
    )
    .await;
    let start = Instant::now();
    let r = Client::http1(gw.addr()).get("x", "/").await;
    assert_eq!(r.status, 429);
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn delay_percentage_is_honoured() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, "{delay: {fixedDelay: 300ms, percentage: {value: 50}}}").await;
    // 8 clients × 20 requests; a request counts as delayed when it took at least the delay.
    let mut workers = Vec::new();
    for _ in 0..8 {
        let c = Client::http1(gw.addr());
        workers.push(tokio::spawn(async move {
            let mut delayed = 0;
            for _ in 0..20 {
                let start = Instant::now();
                assert_eq!(c.get("x", "/").await.status, 200);
                if start.elapsed() >= Duration::from_millis(300) {
                    delayed += 1;
                }
            }
            delayed
        }));
    }
    let mut delayed = 0;
    for w in workers {
        delayed += w.await.unwrap();
    }
    // Binomial(160, 0.5): sd ≈ 6.3; ±6 sd. (A slow machine can only push the count up by
    // making undelayed requests take 300 ms, so the upper bound is loose too.)
    assert!((42..=118).contains(&delayed), "{delayed} of 160 delayed");
}
