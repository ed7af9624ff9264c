//! Scenario: three endpoints under load, one killed mid-load (listener closed, open connections
//! dropped). Retries (to another endpoint) and outlier ejection keep every client request
//! successful. Bounded load on 127.0.0.1: 8 concurrent clients × 50 requests. Prints the numbers.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{
    destination_rule, eventually, gateway_yaml, service_at, virtual_service, Client, TestGateway,
    Upstream,
};

const CLIENTS: usize = 8;
const PER_CLIENT: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_endpoint_killed_mid_load_loses_no_request() {
    let ups = [
        Upstream::start("u0").await,
        Upstream::start("u1").await,
        Upstream::start("u2").await,
    ];
    let addrs: Vec<_> = ups.iter().map(|u| u.addr).collect();
    let yaml = gateway_yaml(&["*"])
        + &service_at("a.svc", "HTTP", &addrs)
        + &destination_rule(
            "a.svc",
            "{outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s}}",
        )
        + &virtual_service(
            "  - route: [{destination: {host: a.svc}}]\n    retries: {attempts: 3, retryOn: \"connect-failure,reset,5xx\"}\n",
        );
    let gw = TestGateway::start(&yaml).await;

    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..CLIENTS {
        let c = Client::http1(gw.addr());
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let (mut failed, mut retries) = (0usize, 0usize);
            for i in 0..PER_CLIENT {
                match c.try_get("x", &format!("/w{w}/r{i}")).await {
                    Ok(r) if r.status == 200 => {
                        let attempt: usize = r
                            .field("h:x-envoy-attempt-count")
                            .and_then(|a| a.parse().ok())
                            .unwrap_or(1);
                        retries += attempt - 1;
                    }
                    Ok(r) => {
                        eprintln!("failed: {} {}", r.status, r.body);
                        failed += 1;
                    }
                    Err(e) => {
                        eprintln!("failed: {e}");
                        failed += 1;
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            (failed, retries)
        }));
    }
    // Kill one endpoint once a quarter of the load went through.
    let total = CLIENTS * PER_CLIENT;
    assert!(
        eventually(Duration::from_secs(30), || done.load(Ordering::SeqCst)
            >= total / 4)
        .await,
        "load did not start"
    );
    let killed_at = done.load(Ordering::SeqCst);
    let hits_before_kill = ups[1].hits();
    ups[1].kill();
    let start = Instant::now();

    let (mut failed, mut retries) = (0, 0);
    for w in workers {
        let (f, r) = tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .expect("load finished")
            .unwrap();
        failed += f;
        retries += r;
    }
    let cluster = gw.gw.snapshot().clusters[0].clone();
    let stats = cluster.pool_stats();
    let ejections = cluster.ejections();
    let hits: Vec<usize> = ups.iter().map(|u| u.hits()).collect();
    eprintln!(
        "scenario: {total} requests by {CLIENTS} clients, endpoint u1 killed after {killed_at}; \
         failed {failed}; retried attempts seen by clients {retries}; gateway retries {}; \
         ejections {ejections}; upstream hits {hits:?} (u1 had {hits_before_kill} before the kill); \
         {:?} from kill to end",
        stats.retries_total,
        start.elapsed()
    );
    assert_eq!(failed, 0, "every client request succeeded");
    assert!(ejections >= 1, "the dead endpoint was ejected");
    assert!(stats.retries_total >= 1, "failures were retried");
    let dead = cluster
        .endpoints()
        .into_iter()
        .find(|e| e.addr == ups[1].addr)
        .expect("u1 is an endpoint");
    assert!(dead.ejections() >= 1, "u1 itself was ejected");
    assert!(
        hits.iter().sum::<usize>() >= total,
        "every request reached an upstream"
    );
}
