//! Reloads under load: 64 keep-alive clients for the whole test, 100 reloads through the file
//! watcher alternating the upstream of one path. No request may fail, and once a reload is live
//! every new request goes where the new config says.

use crate::support;

use support::load::Load;
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

    let load = Load::start(addr, 64, "x", "/x", |r| {
        r.status == 200 && (r.upstream() == "a" || r.upstream() == "b")
    });

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
    let (ok, failed) = load.stop().await;
    let st = gw.gw.status().borrow().clone();
    eprintln!(
        "reload_swap: {ok} requests ok, {failed} failed, {} reloads applied, {} failed reloads",
        st.successes, st.failures
    );
    assert_eq!(failed, 0);
    assert!(ok >= 1000, "the load did not run");
    assert_eq!(st.generation, 101);
    assert_eq!(st.failures, 0);
}
