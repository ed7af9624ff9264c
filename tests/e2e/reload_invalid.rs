//! A broken config written while traffic flows: nothing fails, the old routes keep serving, the
//! errors are reported with file/resource/field; fixing the file applies the fix.

use crate::support;

use support::load::Load;
use support::{gateway_yaml, static_service, Client, TestGateway, Upstream};

fn config(a: &Upstream, b: &Upstream, uri_match: &str, to: &str) -> String {
    gateway_yaml(&["*"])
        + &static_service("a.svc", &[(a, &[])])
        + &static_service("b.svc", &[(b, &[])])
        + &format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - match: [{{uri: {uri_match}}}]\n    route: [{{destination: {{host: {to}.svc}}}}]\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_config_mid_traffic_keeps_the_last_good_one() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = TestGateway::start_watching(&config(&a, &b, "{prefix: /x}", "a")).await;
    let addr = gw.addr();
    let load = Load::start(addr, 16, "x", "/x", |r| r.status == 200);

    // 1. A bad regex (a validation error).
    std::fs::write(gw.config_file(), config(&a, &b, "{regex: \"/x[\"}", "b")).unwrap();
    let st = gw
        .wait_status("the bad regex to be refused", |s| s.failures >= 1)
        .await;
    let file = gw.config_file();
    assert!(
        st.last_errors.iter().any(|e| e.starts_with(&format!(
            "{}#4 VirtualService default/vs: spec.http[0].match[0].uri.regex: invalid regex",
            file.display()
        ))),
        "{:?}",
        st.last_errors
    );
    assert_eq!(
        Client::http1(addr).get("x", "/x").await.upstream(),
        "a",
        "old routes still served"
    );

    // 2. Not even YAML.
    std::fs::write(gw.config_file(), "spec: [unclosed\n").unwrap();
    let st = gw
        .wait_status("the syntax error to be refused", |s| s.failures >= 2)
        .await;
    assert!(
        st.last_errors[0].contains("YAML syntax error"),
        "{:?}",
        st.last_errors
    );
    assert_eq!(st.generation, 1);

    // 3. Fixed: applied.
    std::fs::write(gw.config_file(), config(&a, &b, "{prefix: /x}", "b")).unwrap();
    let st = gw.wait_generation(2).await;
    assert!(st.last_errors.is_empty());
    assert_eq!(Client::http1(addr).get("x", "/x").await.upstream(), "b");

    let (ok, failed) = load.stop().await;
    eprintln!("reload_invalid: {ok} ok, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 100);
}
