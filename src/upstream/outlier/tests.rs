//! The outlier state machine on tokio's paused clock: thresholds, ejection and return times,
//! growing and decaying ejection time, maxEjectionPercent, panic mode.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::upstream::cluster::Cluster;
use crate::upstream::{Discovery, EndpointSpec, Pick, Registry, Resolver};

const S: Duration = Duration::from_secs(1);

fn policy() -> OutlierPolicy {
    OutlierPolicy {
        consecutive_5xx: Some(3),
        consecutive_gateway: None,
        consecutive_local: None,
        interval: 10 * S,
        base_ejection: 30 * S,
        max_ejection_percent: 100,
        min_health_percent: 0,
    }
}

fn cluster(hosts: u16, p: OutlierPolicy) -> Arc<Cluster> {
    let mut spec = crate::upstream::cluster::tests::spec(vec![]);
    spec.discovery = Discovery::Static(
        (1..=hosts)
            .map(|i| EndpointSpec {
                addr: SocketAddr::from(([127, 0, 0, 1], i)),
                weight: 1,
            })
            .collect(),
    );
    spec.outlier = Some(p);
    Registry::default().get_or_create(&spec, &Resolver::from_system(), &|_| {
        Err("no TLS in these tests".into())
    })
}

fn status(code: u16) -> Class {
    Class::Response {
        status: code,
        grpc: None,
        ratelimited: false,
    }
}

/// Ports the cluster may pick now (100 picks cover every usable endpoint).
fn usable(c: &Cluster) -> Vec<u16> {
    let mut ports: Vec<u16> = (0..100)
        .filter_map(|_| match c.pick(None, &[]) {
            Pick::Endpoint(e) => Some(e.addr.port()),
            _ => None,
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn fail(c: &Cluster, port: u16, times: usize, class: Class) {
    let ep = c
        .endpoints()
        .into_iter()
        .find(|e| e.addr.port() == port)
        .unwrap();
    for _ in 0..times {
        c.record(&ep, &class);
    }
}

#[tokio::test(start_paused = true)]
async fn ejects_after_consecutive_5xx_and_a_success_resets_the_count() {
    let c = cluster(3, policy());
    fail(&c, 1, 2, status(500));
    fail(&c, 1, 1, status(200));
    fail(&c, 1, 2, status(503));
    assert_eq!(
        usable(&c),
        vec![1, 2, 3],
        "2 + 2 errors with a success between: no ejection"
    );
    fail(&c, 1, 1, Class::ConnectFailure);
    assert_eq!(
        usable(&c),
        vec![2, 3],
        "third consecutive error (a local-origin one) ejects"
    );
    assert_eq!(c.ejections(), 1);
    fail(&c, 2, 10, Class::Overflow);
    fail(&c, 2, 10, status(404));
    assert_eq!(usable(&c), vec![2, 3], "overflow and 4xx never count");
}

#[tokio::test(start_paused = true)]
async fn returns_at_the_first_sweep_after_base_ejection_time() {
    let c = cluster(2, policy());
    tokio::time::advance(3 * S).await;
    fail(&c, 1, 3, status(500));
    // Ejected at 3 s for 30 s: Envoy's sweeps run every 10 s, so it returns at 40 s.
    tokio::time::advance(36 * S).await;
    assert_eq!(usable(&c), vec![2]);
    tokio::time::advance(S).await;
    assert_eq!(usable(&c), vec![1, 2]);
}

#[tokio::test(start_paused = true)]
async fn ejection_time_grows_with_each_ejection_and_is_capped() {
    let mut p = policy();
    p.interval = S;
    p.base_ejection = 100 * S;
    let c = cluster(2, p);
    let mut expected = Vec::new();
    let mut got = Vec::new();
    for n in 1..=4u64 {
        fail(&c, 1, 3, status(500));
        let start = tokio::time::Instant::now();
        let mut waited = 0;
        // Bounded: at most 400 one-second steps.
        while usable(&c) != vec![1, 2] && waited < 400 {
            tokio::time::advance(S).await;
            waited += 1;
        }
        got.push(start.elapsed().as_secs());
        expected.push((100 * n).min(300));
    }
    assert_eq!(got, expected, "100 s, 200 s, then capped at 300 s");
}

#[tokio::test(start_paused = true)]
async fn healthy_sweeps_shrink_the_next_ejection() {
    let mut p = policy();
    p.interval = 10 * S;
    p.base_ejection = 10 * S;
    let c = cluster(2, p);
    fail(&c, 1, 3, status(500));
    tokio::time::advance(10 * S).await;
    fail(&c, 1, 3, status(500));
    // Second ejection at once after returning: 2 × base.
    tokio::time::advance(19 * S).await;
    assert_eq!(usable(&c), vec![2]);
    tokio::time::advance(S).await;
    assert_eq!(usable(&c), vec![1, 2]);
    // Healthy for 2 full sweeps: the multiplier drops from 2 to 0, so the next is 1 × base.
    tokio::time::advance(20 * S).await;
    fail(&c, 1, 3, status(500));
    tokio::time::advance(9 * S).await;
    assert_eq!(usable(&c), vec![2]);
    tokio::time::advance(S).await;
    assert_eq!(usable(&c), vec![1, 2]);
}

#[tokio::test(start_paused = true)]
async fn max_ejection_percent_is_respected_but_one_host_may_always_go() {
    let mut p = policy();
    p.max_ejection_percent = 50;
    let c = cluster(4, p.clone());
    for port in 1..=4 {
        fail(&c, port, 3, status(500));
    }
    assert_eq!(usable(&c), vec![3, 4], "50 % of 4 hosts: two ejected");
    p.max_ejection_percent = 10;
    let c = cluster(3, p);
    for port in 1..=3 {
        fail(&c, port, 3, status(500));
    }
    assert_eq!(
        usable(&c),
        vec![2, 3],
        "10 % of 3 hosts rounds to none, yet one may go"
    );
    // A refused ejection needs a success before the counter can trigger again.
    fail(&c, 2, 3, status(500));
    assert_eq!(c.ejections(), 1);
}

#[tokio::test(start_paused = true)]
async fn all_ejected_is_no_healthy_unless_panic_mode() {
    let c = cluster(2, policy());
    fail(&c, 1, 3, status(500));
    fail(&c, 2, 3, status(500));
    assert!(matches!(c.pick(None, &[]), Pick::NoHealthy));
    let mut p = policy();
    p.min_health_percent = 60;
    let c = cluster(2, p);
    fail(&c, 1, 3, status(500));
    assert_eq!(
        usable(&c),
        vec![1, 2],
        "50 % healthy < 60 %: panic, ejections ignored"
    );
}

#[tokio::test(start_paused = true)]
async fn gateway_errors_and_split_local_origin_counters() {
    let mut p = policy();
    p.consecutive_5xx = None;
    p.consecutive_gateway = Some(2);
    let c = cluster(2, p.clone());
    fail(&c, 1, 1, status(502));
    fail(&c, 1, 1, status(500));
    fail(&c, 1, 1, status(504));
    assert_eq!(
        usable(&c),
        vec![1, 2],
        "a 500 resets the gateway-error count"
    );
    fail(&c, 1, 1, Class::Timeout);
    assert_eq!(
        usable(&c),
        vec![2],
        "504 then a timeout: two gateway errors"
    );

    p.consecutive_gateway = None;
    p.consecutive_5xx = Some(2);
    p.consecutive_local = Some(3);
    let c = cluster(2, p);
    fail(
        &c,
        1,
        2,
        Class::Reset {
            refused_stream: false,
        },
    );
    assert_eq!(
        usable(&c),
        vec![1, 2],
        "split: local-origin failures are not 5xx"
    );
    fail(&c, 1, 1, Class::ConnectFailure);
    assert_eq!(usable(&c), vec![2]);
    fail(
        &c,
        2,
        1,
        Class::Response {
            status: 200,
            grpc: Some(14),
            ratelimited: false,
        },
    );
    fail(&c, 2, 1, status(500));
    assert!(
        matches!(c.pick(None, &[]), Pick::NoHealthy),
        "gRPC UNAVAILABLE counts as a 503"
    );
}
