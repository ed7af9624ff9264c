//! Outlier detection end to end: an endpoint that fails is ejected after exactly the configured
//! number of errors, comes back after its ejection time, is ejected for longer the next time, and
//! `maxEjectionPercent` bounds how many go. Real sockets, short real durations; every wait is a
//! bounded loop on observable state (upstream hit counts).

use crate::support;

use std::time::{Duration, Instant};

use support::{
    destination_rule, gateway_yaml, service_at, virtual_service, Client, Mode, TestGateway,
    Upstream,
};

async fn gateway(ups: &[&Upstream], policy: &str) -> TestGateway {
    let addrs: Vec<_> = ups.iter().map(|u| u.addr).collect();
    let yaml = gateway_yaml(&["*"])
        + &service_at("a.svc", "HTTP", &addrs)
        + &destination_rule("a.svc", policy)
        + &virtual_service(
            "  - route: [{destination: {host: a.svc}}]\n    retries: {attempts: 0}\n",
        );
    TestGateway::start(&yaml).await
}

#[tokio::test]
async fn ejected_after_the_configured_errors_and_back_after_base_ejection_time() {
    let (a, b, bad) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("bad").await,
    );
    bad.set_mode(Mode::Status(500));
    let gw = gateway(
        &[&a, &b, &bad],
        "{loadBalancer: {simple: ROUND_ROBIN}, outlierDetection: {consecutive5xxErrors: 3, interval: 50ms, baseEjectionTime: 300ms, maxEjectionPercent: 100}}",
    )
    .await;
    let c = Client::http1(gw.addr());
    let mut ejected_at = None;
    for _ in 0..60 {
        c.get("x", "/").await;
        if bad.hits() == 3 && ejected_at.is_none() {
            ejected_at = Some(Instant::now());
        }
        if ejected_at.is_some_and(|t| t.elapsed() > Duration::from_millis(250)) {
            break;
        }
    }
    let ejected_at = ejected_at.expect("bad got 3 requests");
    assert_eq!(bad.hits(), 3, "no request after the third consecutive 5xx");
    // Healed; it returns once its ejection time is over (bounded wait: 5 s).
    bad.set_mode(Mode::Normal);
    let mut back = None;
    while ejected_at.elapsed() < Duration::from_secs(5) {
        let r = c.get("x", "/").await;
        if r.upstream() == "bad" {
            back = Some(ejected_at.elapsed());
            break;
        }
    }
    let back = back.expect("the ejected endpoint came back");
    assert!(back >= Duration::from_millis(275), "back after {back:?}");
    assert!(back < Duration::from_millis(2000), "back after {back:?}");
}

#[tokio::test]
async fn ejection_time_grows_with_each_ejection() {
    let (a, bad) = (Upstream::start("a").await, Upstream::start("bad").await);
    bad.set_mode(Mode::Status(503));
    let gw = gateway(
        &[&a, &bad],
        "{loadBalancer: {simple: ROUND_ROBIN}, outlierDetection: {consecutive5xxErrors: 1, interval: 100ms, baseEjectionTime: 200ms, maxEjectionPercent: 100}}",
    )
    .await;
    let c = Client::http1(gw.addr());
    // Each hit on bad ejects it at once; measure how long it stays away each time.
    let mut away = Vec::new();
    let mut last_hit = None;
    let mut hits = 0;
    let limit = Instant::now() + Duration::from_secs(10);
    while away.len() < 3 && Instant::now() < limit {
        c.get("x", "/").await;
        if bad.hits() > hits {
            hits = bad.hits();
            if let Some(t) = last_hit {
                away.push(Instant::now().duration_since(t));
            }
            last_hit = Some(Instant::now());
        }
    }
    assert_eq!(
        away.len(),
        3,
        "bad was ejected and came back three times: {away:?}"
    );
    // 200 ms, 400 ms, 600 ms (each rounded up to the next 100 ms sweep). Measured between
    // responses at the client, so a few ms of skew below are allowed.
    for (i, d) in away.iter().enumerate() {
        let base = Duration::from_millis(200 * (i as u64 + 1));
        assert!(
            *d + Duration::from_millis(25) >= base,
            "ejection {} lasted {d:?}, less than {base:?}",
            i + 1
        );
        assert!(
            *d < base + Duration::from_millis(1500),
            "ejection {} lasted {d:?}",
            i + 1
        );
    }
    // Each ejection is up to one 100 ms sweep longer than its base, so consecutive ones may be
    // as close as 75 ms apart (300 ms then 375 ms): they grow, by no fixed margin.
    assert!(away[1] > away[0], "{away:?}");
    assert!(away[2] > away[1], "{away:?}");
}

#[tokio::test]
async fn max_ejection_percent_is_respected() {
    let good = Upstream::start("good").await;
    let bads = [
        Upstream::start("bad1").await,
        Upstream::start("bad2").await,
        Upstream::start("bad3").await,
    ];
    for b in &bads {
        b.set_mode(Mode::Status(500));
    }
    let gw = gateway(
        &[&good, &bads[0], &bads[1], &bads[2]],
        "{loadBalancer: {simple: ROUND_ROBIN}, outlierDetection: {consecutive5xxErrors: 2, interval: 10s, baseEjectionTime: 60s, maxEjectionPercent: 50}}",
    )
    .await;
    let c = Client::http1(gw.addr());
    for _ in 0..100 {
        c.get("x", "/").await;
    }
    let mut hits: Vec<usize> = bads.iter().map(|b| b.hits()).collect();
    hits.sort_unstable();
    // 50 % of 4 endpoints: two bad ones ejected after 2 errors each, the third keeps serving.
    assert_eq!(&hits[..2], &[2, 2], "{hits:?}");
    assert!(hits[2] > 20, "{hits:?}");
}

#[tokio::test]
async fn without_outlier_detection_nothing_is_ejected() {
    let (a, bad) = (Upstream::start("a").await, Upstream::start("bad").await);
    bad.set_mode(Mode::Status(500));
    let gw = gateway(&[&a, &bad], "{loadBalancer: {simple: ROUND_ROBIN}}").await;
    let c = Client::http1(gw.addr());
    for _ in 0..40 {
        c.get("x", "/").await;
    }
    assert_eq!(bad.hits(), 20);
}

#[tokio::test]
async fn all_ejected_is_no_healthy_upstream() {
    let bad = Upstream::start("bad").await;
    bad.set_mode(Mode::Status(502));
    let gw = gateway(
        &[&bad],
        "{outlierDetection: {consecutiveGatewayErrors: 2, consecutive5xxErrors: 0, interval: 10s, baseEjectionTime: 60s}}",
    )
    .await;
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("x", "/").await.status, 502);
    assert_eq!(c.get("x", "/").await.status, 502);
    let r = c.get("x", "/").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (503, "no healthy upstream")
    );
    assert_eq!(bad.hits(), 2);
}
