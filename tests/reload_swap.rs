//! Reloads under load: 64 keep-alive clients for the whole test, 100 reloads through the file
//! watcher alternating the upstream of one path. No request may fail, and once a reload is live
//! every new request goes where the new config says.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use support::{gateway_yaml, static_service, Client, TestGateway, Upstream};

fn config(a: &Upstream, b: &Upstream, to: &str) -> String {
    gateway_yaml(&["*"])
        + &static_service("a.svc", &[(a, &[])])
        + &static_service("b.svc", &[(b, &[])])
        + &format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - match: [{{uri: {{prefix: /x}}}}]\n    route: [{{destination: {{host: {to}.svc}}}}]\n")
}

/// Replaces the config file atomically (write a temp file, rename it over), as editors and
/// config-management tools do.
fn replace(gw: &TestGateway, yaml: &str) {
    let tmp = gw.dir.path().join(".config.yaml.tmp");
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(&tmp, gw.config_file()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_reloads_under_load_lose_no_request() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = TestGateway::start_watching(&config(&a, &b, "a")).await;
    let addr = gw.addr();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..64 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let c = Client::http1(addr);
            // Bounded even if the test loop above misbehaves.
            for _ in 0..200_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match c.try_get("x", "/x").await {
                    Ok(r) if r.status == 200 && (r.upstream() == "a" || r.upstream() == "b") => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        eprintln!("bad reply: {} {}", r.status, r.body);
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("request error: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    let probe = Client::http1(addr);
    for i in 0..100u64 {
        let to = if i % 2 == 0 { "b" } else { "a" };
        replace(&gw, &config(&a, &b, to));
        gw.wait_generation(i + 2).await;
        // The new table is live: a request that starts now must go where it says.
        assert_eq!(
            probe.get("x", "/x").await.upstream(),
            to,
            "after reload {}",
            i + 1
        );
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let st = gw.gw.status().borrow().clone();
    eprintln!(
        "reload_swap: {} requests ok, {} failed, {} reloads applied, {} failed reloads",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        st.successes,
        st.failures
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) >= 1000, "the load did not run");
    assert_eq!(st.generation, 101);
    assert_eq!(st.failures, 0);
}
