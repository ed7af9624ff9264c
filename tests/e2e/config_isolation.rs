//! One bad resource never takes the other hosts down: at start the resources with errors are
//! skipped and the rest is served; on reload a bad resource keeps its last good version and a file
//! that cannot be parsed keeps its resources; `--strict` keeps all or nothing.
//! Real upstreams, the real gateway, a real client.

use crate::support;

use meshgate::config::Kind;
use support::{gateway_yaml, static_service, Client, TestGateway, Upstream};

fn vs(name: &str, host: &str, gateways: &str, uri: &str, to: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: [\"{host}\"]\n  gateways: [{gateways}]\n  http:\n  - match: [{{uri: {uri}}}]\n    route: [{{destination: {{host: {to}.svc}}}}]\n---\n")
}

/// A Gateway with an error (port number out of range) on port 9090.
const BROKEN_GW: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: broken}\nspec:\n  servers:\n  - port: {number: 9090, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n  - port: {number: 70000, name: http2, protocol: HTTP}\n    hosts: [\"*\"]\n---\n";

/// A DestinationRule with an error (subset without a name) for b.svc.
const BROKEN_DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr-b}\nspec:\n  host: b.svc\n  subsets:\n  - labels: {version: v1}\n---\n";

async fn upstreams() -> (Upstream, Upstream, String) {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let yaml = gateway_yaml(&["*"])
        + &static_service("a.svc", &[(&a, &[])])
        + &static_service("b.svc", &[(&b, &[])]);
    (a, b, yaml)
}

fn tmp(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[tokio::test]
async fn at_start_bad_resources_are_skipped_and_the_rest_is_served() {
    let (_a, _b, base) = upstreams().await;
    let yaml = base
        + BROKEN_GW
        + BROKEN_DR
        + &vs("good", "good.example.com", "gw", "{prefix: /}", "a")
        + &vs("bad", "bad.example.com", "gw", "{regex: \"/x[\"}", "a")
        + &vs(
            "dangling",
            "dangling.example.com",
            "gw, nope",
            "{prefix: /}",
            "a",
        )
        + &vs("both", "both.example.com", "gw, broken", "{prefix: /}", "b");
    let gw = TestGateway::try_start_in(tmp(&[("config.yaml", &yaml)]))
        .await
        .expect("starts despite the bad resources");
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("good.example.com", "/").await.upstream(), "a");
    assert_eq!(
        c.get("both.example.com", "/").await.upstream(),
        "b",
        "served on its valid Gateway; the skipped DestinationRule is as if absent"
    );
    assert_eq!(c.get("bad.example.com", "/").await.status, 404);
    assert_eq!(
        c.get("dangling.example.com", "/").await.status,
        404,
        "a dangling gateway reference is the VirtualService's own error"
    );
    assert!(
        gw.gw.addr(9090).is_none(),
        "the broken Gateway is not served"
    );

    let st = gw.gw.status().borrow().clone();
    let mut skipped: Vec<(Kind, String, bool)> = st
        .skipped
        .iter()
        .map(|s| (s.id.kind, s.id.name.clone(), s.kept_previous))
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        vec![
            (Kind::Gateway, "broken".into(), false),
            (Kind::VirtualService, "bad".into(), false),
            (Kind::VirtualService, "dangling".into(), false),
            (Kind::DestinationRule, "dr-b".into(), false),
        ]
    );
    let bad = st.skipped.iter().find(|s| s.id.name == "bad").unwrap();
    assert!(
        bad.errors[0].contains("VirtualService default/bad: spec.http[0].match[0].uri.regex"),
        "{:?}",
        bad.errors
    );
    assert_eq!(st.last_errors.len(), 4, "{:?}", st.last_errors);
}

#[tokio::test]
async fn strict_mode_refuses_the_whole_config() {
    let (_a, _b, base) = upstreams().await;
    let yaml = base
        + &vs("good", "good.example.com", "gw", "{prefix: /}", "a")
        + &vs("bad", "bad.example.com", "gw", "{regex: \"/x[\"}", "a");
    let err = TestGateway::try_start_with(tmp(&[("config.yaml", &yaml)]), |s| s.strict = true)
        .await
        .err()
        .expect("strict refuses");
    assert!(err.contains("VirtualService default/bad"), "{err}");
}

#[tokio::test]
async fn nothing_left_to_serve_is_refused() {
    let yaml = vs("bad", "bad.example.com", "gw", "{regex: \"/x[\"}", "a") + &gateway_yaml(&["*"]);
    let yaml = yaml.replace("number: 8080", "number: 0");
    let err = TestGateway::try_start_in(tmp(&[("config.yaml", &yaml)]))
        .await
        .err()
        .expect("nothing can be served");
    assert!(err.contains("nothing left to serve"), "{err}");
}

#[tokio::test]
async fn on_reload_a_bad_resource_keeps_its_last_good_version() {
    let (_a, _b, base) = upstreams().await;
    let good = |uri: &str, to: &str| vs("shop", "shop.example.com", "gw", uri, to);
    let dir = tmp(&[
        ("base.yaml", &base),
        ("shop.yaml", &good("{prefix: /}", "a")),
    ]);
    let gw = TestGateway::start_watching_in(dir).await;
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("shop.example.com", "/").await.upstream(), "a");

    // The shop VirtualService breaks while a new one is added in another file: the new one is
    // served, the shop keeps its last good version.
    std::fs::write(
        gw.dir.path().join("shop.yaml"),
        good("{regex: \"/x[\"}", "b"),
    )
    .unwrap();
    std::fs::write(
        gw.dir.path().join("new.yaml"),
        vs("new", "new.example.com", "gw", "{prefix: /}", "b"),
    )
    .unwrap();
    let st = gw
        .wait_status("the new VirtualService to be served", |s| {
            s.skipped.iter().any(|s| s.id.name == "shop") && s.partial >= 1 && s.generation >= 2
        })
        .await;
    assert_eq!(c.get("new.example.com", "/").await.upstream(), "b");
    assert_eq!(
        c.get("shop.example.com", "/").await.upstream(),
        "a",
        "last good version"
    );
    let shop = st.skipped.iter().find(|s| s.id.name == "shop").unwrap();
    assert!(shop.kept_previous);
    assert!(
        st.last_errors[0].contains("spec.http[0].match[0].uri.regex"),
        "{:?}",
        st.last_errors
    );

    // Fixed: applied, nothing skipped any more.
    std::fs::write(gw.dir.path().join("shop.yaml"), good("{prefix: /}", "b")).unwrap();
    let st = gw
        .wait_status("the fix to apply", |s| s.skipped.is_empty())
        .await;
    assert!(st.last_errors.is_empty());
    assert_eq!(c.get("shop.example.com", "/").await.upstream(), "b");
}

#[tokio::test]
async fn on_reload_an_unparseable_file_keeps_its_resources() {
    let (_a, _b, base) = upstreams().await;
    let dir = tmp(&[
        ("base.yaml", &base),
        (
            "shop.yaml",
            &vs("shop", "shop.example.com", "gw", "{prefix: /}", "a"),
        ),
        (
            "blog.yaml",
            &vs("blog", "blog.example.com", "gw", "{prefix: /}", "a"),
        ),
    ]);
    let gw = TestGateway::start_watching_in(dir).await;
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("blog.example.com", "/").await.upstream(), "a");

    std::fs::write(gw.dir.path().join("blog.yaml"), "spec: [unclosed\n").unwrap();
    std::fs::write(
        gw.dir.path().join("shop.yaml"),
        vs("shop", "shop.example.com", "gw", "{prefix: /}", "b"),
    )
    .unwrap();
    let st = gw
        .wait_status("the shop change to apply", |s| {
            s.generation >= 2 && s.partial >= 1
        })
        .await;
    assert_eq!(c.get("shop.example.com", "/").await.upstream(), "b");
    assert_eq!(
        c.get("blog.example.com", "/").await.upstream(),
        "a",
        "the unparseable file's resources keep serving"
    );
    assert!(
        st.last_errors
            .iter()
            .any(|e| e.contains("YAML syntax error")),
        "{:?}",
        st.last_errors
    );
    let blog = st.skipped.iter().find(|s| s.id.name == "blog").unwrap();
    assert!(blog.kept_previous);
}

/// The last good version is read again from the text it was loaded from (the served config keeps
/// file texts, not the parsed model): it stays served across reloads while its file changes
/// around it.
#[tokio::test]
async fn a_kept_version_survives_later_edits_of_its_file() {
    let (_a, _b, base) = upstreams().await;
    let two = |shop: &str, blog_to: &str| {
        vs("shop", "shop.example.com", "gw", shop, "a")
            + &vs("blog", "blog.example.com", "gw", "{prefix: /}", blog_to)
    };
    let dir = tmp(&[
        ("base.yaml", &base),
        ("site.yaml", &two("{prefix: /}", "a")),
    ]);
    let gw = TestGateway::start_watching_in(dir).await;
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("shop.example.com", "/").await.upstream(), "a");

    // The shop breaks and the blog moves to b in the same file; then the blog moves back to a
    // while the shop stays broken (another way).
    let site = gw.dir.path().join("site.yaml");
    std::fs::write(&site, two("{regex: \"/x[\"}", "b")).unwrap();
    gw.wait_status("the blog change", |s| s.generation >= 2)
        .await;
    assert_eq!(c.get("blog.example.com", "/").await.upstream(), "b");
    std::fs::write(&site, two("{regex: \"/y[\"}", "a")).unwrap();
    let st = gw
        .wait_status("the second blog change", |s| s.generation >= 3)
        .await;
    assert_eq!(c.get("blog.example.com", "/").await.upstream(), "a");
    assert_eq!(
        c.get("shop.example.com", "/").await.upstream(),
        "a",
        "the shop's version from the first text is still served"
    );
    let shop = st.skipped.iter().find(|s| s.id.name == "shop").unwrap();
    assert!(shop.kept_previous, "{st:?}");
    assert!(
        st.last_errors.iter().any(|e| e.contains("/y[")),
        "{:?}",
        st.last_errors
    );
}
