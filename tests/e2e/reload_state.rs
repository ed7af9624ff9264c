//! Upstream state survives a reload for destinations that did not change: the live cluster
//! (endpoints, DNS answers, balancing position) is the same object; a changed one starts fresh.

use crate::support;

use std::sync::Arc;

use support::{gateway_yaml, static_service, Client, TestGateway, Upstream};

fn config(a: &Upstream, b: &Upstream, c: &Upstream, extra_route: bool) -> String {
    let mut yaml = gateway_yaml(&["*"])
        + &static_service("ab.svc", &[(a, &[]), (b, &[])])
        + &static_service("c.svc", &[(c, &[])])
        + "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ab}\nspec:\n  host: ab.svc\n  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n---\n"
        + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - match: [{uri: {prefix: /ab}}]\n    route: [{destination: {host: ab.svc}}]\n";
    if extra_route {
        yaml.push_str(
            "  - match: [{uri: {prefix: /c}}]\n    route: [{destination: {host: c.svc}}]\n",
        );
    }
    yaml
}

#[tokio::test]
async fn unchanged_clusters_keep_their_state_across_reloads() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let gw = TestGateway::start_watching(&config(&a, &b, &c, false)).await;
    let client = Client::http1(gw.addr());
    let before = gw.gw.snapshot().clusters[0].clone();
    let first = client.get("x", "/ab").await.upstream().to_owned();

    // Reload with an extra route: the ab.svc cluster is unchanged.
    std::fs::write(gw.config_file(), config(&a, &b, &c, true)).unwrap();
    gw.wait_generation(2).await;
    let snap = gw.gw.snapshot();
    let after = snap
        .clusters
        .iter()
        .find(|c| c.spec.host == "ab.svc")
        .unwrap();
    assert!(Arc::ptr_eq(&before, after), "the live cluster was rebuilt");
    // Round robin continues where it was instead of starting over at the first endpoint.
    let second = client.get("x", "/ab").await.upstream().to_owned();
    assert_ne!(first, second, "balancing state was reset by the reload");
    assert_eq!(client.get("x", "/c").await.upstream(), "c");

    // Changing the destination (its endpoints) gives it fresh state.
    let d = Upstream::start("d").await;
    std::fs::write(gw.config_file(), config(&a, &d, &c, true)).unwrap();
    gw.wait_generation(3).await;
    let snap = gw.gw.snapshot();
    let changed = snap
        .clusters
        .iter()
        .find(|c| c.spec.host == "ab.svc")
        .unwrap();
    assert!(!Arc::ptr_eq(&before, changed));
}

fn regex_config(b_pattern: &str) -> String {
    gateway_yaml(&["*"])
        + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"
        + "  - match: [{uri: {regex: \"/a/[0-9]+\"}}]\n    directResponse: {status: 200, body: {string: a}}\n"
        + &format!("  - match: [{{uri: {{regex: \"{b_pattern}\"}}}}]\n    directResponse: {{status: 200, body: {{string: b}}}}\n")
}

/// A reload takes the served config's compiled regexes instead of compiling them again; an edited
/// pattern is compiled anew and matches as now written, the old one no longer.
#[tokio::test]
async fn an_edited_regex_matches_as_written_after_a_reload() {
    let gw = TestGateway::start_watching(&regex_config("/b/[a-z]+")).await;
    let client = Client::http1(gw.addr());
    let status = |r: support::Reply| (r.status.as_u16(), r.body);
    assert_eq!(status(client.get("x", "/a/12").await), (200, "a".into()));
    assert_eq!(status(client.get("x", "/b/xy").await), (200, "b".into()));
    assert_eq!(client.get("x", "/b/12").await.status, 404);

    std::fs::write(gw.config_file(), regex_config("/b/[0-9]+")).unwrap();
    gw.wait_generation(2).await;
    assert_eq!(status(client.get("x", "/a/12").await), (200, "a".into()));
    assert_eq!(status(client.get("x", "/b/12").await), (200, "b".into()));
    assert_eq!(client.get("x", "/b/xy").await.status, 404);
}
