//! Mirroring end to end: the mirror gets a copy (method, path, host, body) while the client gets
//! the main upstream's answer; a dead or hanging mirror never slows or fails the main request;
//! `mirrorPercentage` and per-mirror percentages (statistical, wide bounds).

use crate::support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use support::{
    closed_addr, eventually, gateway_yaml, service_at, static_service, virtual_service, Client,
    Mode, TestGateway, Upstream,
};

async fn gateway(main: &Upstream, mirrors: &str, extra_services: &str) -> TestGateway {
    let yaml = gateway_yaml(&["*"])
        + &static_service("a.svc", &[(main, &[])])
        + extra_services
        + &virtual_service(&format!(
            "  - route: [{{destination: {{host: a.svc}}}}]\n{mirrors}"
        ));
    TestGateway::start(&yaml).await
}

#[tokio::test]
async fn the_mirror_gets_a_copy_and_the_client_the_main_answer() {
    let (main, m) = (Upstream::start("main").await, Upstream::start("m").await);
    let gw = gateway(
        &main,
        "    mirror: {host: m.svc}\n",
        &static_service("m.svc", &[(&m, &[])]),
    )
    .await;
    let c = Client::http1(gw.addr());
    let r = c.get("shop.example.com", "/p?q=1").await;
    assert_eq!(r.upstream(), "main");
    assert!(eventually(Duration::from_secs(10), || m.hits() == 1).await);
    let copy = &m.seen()[0];
    assert!(copy.contains("method=GET\n"), "{copy}");
    assert!(copy.contains("path=/p?q=1\n"), "{copy}");
    assert!(
        copy.contains("h:host=shop.example.com\n"),
        "no -shadow suffix: {copy}"
    );
    // A POST body is mirrored whole.
    let req = c
        .request("x", "/count")
        .method("POST")
        .body(Full::new(Bytes::from(vec![b'y'; 10_000])))
        .unwrap();
    assert_eq!(c.send(req).await.body, "bytes=10000");
    assert!(
        eventually(Duration::from_secs(10), || m
            .seen()
            .iter()
            .any(|s| s.contains("bytes=10000\n")))
        .await
    );
}

#[tokio::test]
async fn a_dead_or_hanging_mirror_never_slows_the_main_request() {
    let main = Upstream::start("main").await;
    let hang = Upstream::start("hang").await;
    hang.set_mode(Mode::Hang);
    let gw = gateway(
        &main,
        "    mirrors:\n    - destination: {host: dead.svc}\n    - destination: {host: hang.svc}\n",
        &(service_at("dead.svc", "HTTP", &[closed_addr()])
            + &static_service("hang.svc", &[(&hang, &[])])),
    )
    .await;
    let c = Client::http1(gw.addr());
    let start = Instant::now();
    for _ in 0..20 {
        let r = c.get("x", "/").await;
        assert_eq!((r.status.as_u16(), r.upstream()), (200, "main"));
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "20 requests took {:?}",
        start.elapsed()
    );
    assert_eq!(main.hits(), 20);
    // The hanging mirror did get its copies (they are still hanging there).
    assert!(eventually(Duration::from_secs(10), || hang.in_flight() == 20).await);
}

#[tokio::test]
async fn a_mirror_to_an_unknown_destination_is_skipped() {
    let main = Upstream::start("main").await;
    let gw = gateway(&main, "    mirror: {host: nowhere.invalid}\n", "").await;
    let r = Client::http1(gw.addr()).get("x", "/").await;
    assert_eq!((r.status.as_u16(), r.upstream()), (200, "main"));
}

#[tokio::test]
async fn mirror_percentages() {
    let main = Upstream::start("main").await;
    let (m1, m2, m3) = (
        Upstream::start("m1").await,
        Upstream::start("m2").await,
        Upstream::start("m3").await,
    );
    let services = static_service("m1.svc", &[(&m1, &[])])
        + &static_service("m2.svc", &[(&m2, &[])])
        + &static_service("m3.svc", &[(&m3, &[])]);
    let gw = gateway(
        &main,
        concat!(
            "    mirrors:\n",
            "    - {destination: {host: m1.svc}, percentage: {value: 25}}\n",
            "    - {destination: {host: m2.svc}, percentage: {value: 0}}\n",
            "    - {destination: {host: m3.svc}}\n",
        ),
        &services,
    )
    .await;
    let c = Client::http1(gw.addr());
    let n = 400;
    for _ in 0..n {
        c.get("x", "/").await;
    }
    // Every request is mirrored to m3 (no percentage = 100 %): wait for all of them.
    assert!(eventually(Duration::from_secs(10), || m3.hits() == n).await);
    let snapshot = gw.gw.snapshot();
    assert!(
        eventually(Duration::from_secs(10), || snapshot
            .clusters
            .iter()
            .all(|c| c.pool_stats().requests == 0))
        .await
    );
    // Binomial(400, 0.25): mean 100, sd ≈ 8.7; ±5 sd.
    assert!((55..=145).contains(&m1.hits()), "m1 got {}", m1.hits());
    assert_eq!(m2.hits(), 0);
    assert_eq!(main.hits(), n);
}
