//! Connection-pool limits end to end: over `http2MaxRequests`, or with every allowed connection
//! busy and the pending queue full, the gateway answers 503 `overflow` with
//! `x-envoy-overloaded: true` at once instead of queueing; `maxRequestsPerConnection: 1` and
//! `idleTimeout` shape the upstream connections.

use crate::support;

use std::time::Duration;

use support::{
    destination_rule, eventually, gateway_yaml, service_at, virtual_service, Client, Mode, Reply,
    TestGateway, Upstream,
};

const OVERFLOW: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";

async fn gateway(up: &Upstream, policy: &str) -> TestGateway {
    let yaml = gateway_yaml(&["*"])
        + &service_at("a.svc", "HTTP", &[up.addr])
        + &destination_rule("a.svc", policy)
        + &virtual_service("  - route: [{destination: {host: a.svc}}]\n");
    TestGateway::start(&yaml).await
}

fn spawn_get(gw: &TestGateway, path: &str) -> tokio::task::JoinHandle<Reply> {
    let c = Client::http1(gw.addr());
    let path = path.to_owned();
    tokio::spawn(async move { c.get("x", &path).await })
}

fn assert_overflow(r: &Reply) {
    assert_eq!((r.status.as_u16(), r.body.as_str()), (503, OVERFLOW));
    assert_eq!(r.header("x-envoy-overloaded"), Some("true"));
}

#[tokio::test]
async fn over_max_requests_is_an_immediate_overflow() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, "{connectionPool: {http: {http2MaxRequests: 2}}}").await;
    let held = [spawn_get(&gw, "/hang"), spawn_get(&gw, "/hang")];
    assert!(eventually(Duration::from_secs(10), || up.in_flight() == 2).await);
    let c = Client::http1(gw.addr());
    let r = c.get("x", "/").await;
    assert_overflow(&r);
    assert_eq!(
        up.hits(),
        2,
        "the refused request never reached the upstream"
    );
    let cluster = gw.gw.snapshot().clusters[0].clone();
    assert_eq!(cluster.pool_stats().overflows_total, 1);
    // Finishing one request frees its slot.
    held[0].abort();
    assert!(
        eventually(Duration::from_secs(10), || cluster.pool_stats().requests
            == 1)
        .await
    );
    assert_eq!(c.get("x", "/").await.status, 200);
    held[1].abort();
}

#[tokio::test]
async fn busy_connections_queue_up_to_max_pending_then_overflow() {
    let up = Upstream::start("a").await;
    let gw = gateway(
        &up,
        "{connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}}",
    )
    .await;
    let cluster = gw.gw.snapshot().clusters[0].clone();
    let first = spawn_get(&gw, "/hang");
    assert!(eventually(Duration::from_secs(10), || up.in_flight() == 1).await);
    // The second waits for the only connection.
    let second = spawn_get(&gw, "/");
    assert!(
        eventually(Duration::from_secs(10), || cluster.pool_stats().pending
            == 1)
        .await
    );
    // The queue is full: the third is refused at once.
    let r = Client::http1(gw.addr()).get("x", "/").await;
    assert_overflow(&r);
    assert_eq!(up.in_flight(), 1);
    // Abandoning the first request frees the connection; the pending one goes through.
    first.abort();
    let r = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("pending request completes")
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        up.max_in_flight(),
        1,
        "never more than one request at the upstream"
    );
}

#[tokio::test]
async fn overflow_is_not_retried_nor_counted_by_outlier_detection() {
    let up = Upstream::start("a").await;
    let gw = gateway(
        &up,
        "{connectionPool: {http: {http2MaxRequests: 1}}, outlierDetection: {consecutive5xxErrors: 1, baseEjectionTime: 60s}}",
    )
    .await;
    let held = spawn_get(&gw, "/hang");
    assert!(eventually(Duration::from_secs(10), || up.in_flight() == 1).await);
    let c = Client::http1(gw.addr());
    for _ in 0..3 {
        assert_overflow(&c.get("x", "/").await);
    }
    held.abort();
    let cluster = gw.gw.snapshot().clusters[0].clone();
    assert!(
        eventually(Duration::from_secs(10), || cluster.pool_stats().requests
            == 0)
        .await
    );
    assert_eq!(
        c.get("x", "/").await.status,
        200,
        "the endpoint was not ejected"
    );
    assert_eq!(cluster.ejections(), 0);
}

#[tokio::test]
async fn max_requests_per_connection_caps_reuse() {
    let up = Upstream::start("a").await;
    let gw = gateway(
        &up,
        "{connectionPool: {http: {maxRequestsPerConnection: 1}}}",
    )
    .await;
    let c = Client::http1(gw.addr());
    for _ in 0..5 {
        assert_eq!(c.get("x", "/").await.status, 200);
    }
    assert_eq!(up.connections(), 5);
    // A cap of 3: 9 sequential requests need 3 connections.
    let capped = Upstream::start("c").await;
    let gw = gateway(
        &capped,
        "{connectionPool: {http: {maxRequestsPerConnection: 3}}}",
    )
    .await;
    let c = Client::http1(gw.addr());
    for _ in 0..9 {
        assert_eq!(c.get("x", "/").await.status, 200);
    }
    assert_eq!(capped.connections(), 3);
    // Without the limit, one pooled connection serves them all.
    let other = Upstream::start("b").await;
    let gw = gateway(&other, "{loadBalancer: {simple: ROUND_ROBIN}}").await;
    let c = Client::http1(gw.addr());
    for _ in 0..5 {
        c.get("x", "/").await;
    }
    assert_eq!(other.connections(), 1);
}

#[tokio::test]
async fn idle_upstream_connections_are_closed_after_idle_timeout() {
    let up = Upstream::start("a").await;
    let gw = gateway(&up, "{connectionPool: {http: {idleTimeout: 100ms}}}").await;
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("x", "/").await.status, 200);
    assert_eq!(up.connections(), 1);
    assert!(
        eventually(Duration::from_secs(10), || up.open_connections() == 0).await,
        "the idle connection was closed"
    );
    assert_eq!(c.get("x", "/").await.status, 200);
    assert_eq!(up.connections(), 2);
}

#[tokio::test]
async fn hanging_upstream_mode_counts_in_flight() {
    // The support upstream's own bookkeeping, relied on above.
    let up = Upstream::start("a").await;
    up.set_mode(Mode::Hang);
    let gw = gateway(&up, "{loadBalancer: {simple: ROUND_ROBIN}}").await;
    let t = spawn_get(&gw, "/");
    assert!(eventually(Duration::from_secs(10), || up.in_flight() == 1).await);
    t.abort();
    assert!(eventually(Duration::from_secs(10), || up.in_flight() == 0).await);
}

#[tokio::test]
async fn max_retries_bounds_concurrent_retries() {
    let up = Upstream::start("a").await;
    up.set_mode(Mode::Hang);
    let yaml = gateway_yaml(&["*"])
        + &service_at("a.svc", "HTTP", &[up.addr])
        + &destination_rule("a.svc", "{connectionPool: {http: {maxRetries: 1}}}")
        + &virtual_service(
            "  - route: [{destination: {host: a.svc}}]\n    retries: {attempts: 3, perTryTimeout: 200ms, retryOn: 5xx}\n",
        );
    let gw = TestGateway::start(&yaml).await;
    // Two requests at once: both time out at ~200 ms; one takes the only retry slot and keeps
    // it through its retries, the other's retry is refused (the client gets its last failure).
    let (a, b) = (spawn_get(&gw, "/"), spawn_get(&gw, "/"));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    for r in [&a, &b] {
        assert_eq!(
            (r.status.as_u16(), r.body.as_str()),
            (504, "upstream request timeout")
        );
    }
    let stats = gw.gw.snapshot().clusters[0].pool_stats();
    assert_eq!(up.hits(), 4 + 1, "one request made 4 attempts, the other 1");
    assert_eq!(stats.retries_total, 3);
    assert_eq!(stats.overflows_total, 1, "one retry refused by maxRetries");
}
