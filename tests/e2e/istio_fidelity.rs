//! Istio semantics a conformance run found missing: pseudo-header matches, match-level
//! `gateways`, redirect `prefixRewrite` on a catch-all, and delegate VirtualServices.
//! Real upstreams, the real gateway, real HTTP/1.1 and h2c clients.

use crate::support;

use http_body_util::Full;
use support::{gateway_yaml, Client, TestGateway};

use support::five_upstreams as setup;

fn vs(name: &str, head: &str, http: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n{head}  http:\n{http}---\n")
}

fn route(to: &str) -> String {
    format!("    route: [{{destination: {{host: {to}.svc}}}}]\n")
}

#[tokio::test]
async fn pseudo_header_matches_over_http1_and_h2() {
    let http = [
        format!("  - match: [{{headers: {{\":method\": {{exact: POST}}}}}}]\n{}", route("a")),
        format!("  - match: [{{headers: {{\":path\": {{regex: \"/q[?]x=1\"}}}}}}]\n{}", route("b")),
        format!("  - match: [{{uri: {{prefix: /scheme}}, headers: {{\":scheme\": {{exact: http}}}}}}]\n{}", route("c")),
        format!("  - match: [{{uri: {{prefix: /auth}}, withoutHeaders: {{\":authority\": {{prefix: internal.}}}}}}]\n{}", route("d")),
        format!("  - match: [{{headers: {{\":authority\": {{prefix: api.}}}}}}]\n{}", route("e")),
    ]
    .concat();
    let (gw, _u) = setup(&vs("vs", "  hosts: [\"*\"]\n  gateways: [gw]\n", &http)).await;
    for c in [Client::http1(gw.addr()), Client::h2c(gw.addr())] {
        let post = c
            .send(
                c.request("x", "/anything")
                    .method("POST")
                    .body(Full::new(Default::default()))
                    .unwrap(),
            )
            .await;
        assert_eq!(post.upstream(), "a", ":method");
        assert_eq!(
            c.get("x", "/q?x=1").await.upstream(),
            "b",
            ":path has the query"
        );
        assert_eq!(
            c.get("x", "/q").await.status,
            404,
            ":path regex is anchored"
        );
        assert_eq!(c.get("x", "/scheme").await.upstream(), "c", ":scheme");
    }
    // `:authority` is Host over HTTP/1.1 (the h2 client here sends the socket address).
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("api.example.com", "/auth").await.upstream(), "d");
    assert_eq!(
        c.get("internal.example.com", "/auth").await.status,
        404,
        "withoutHeaders :authority excludes it"
    );
    assert_eq!(c.get("api.example.com", "/x").await.upstream(), "e");
    assert_eq!(c.get("www.example.com", "/x").await.status, 404);
}

#[test]
fn unknown_pseudo_header_is_an_error() {
    let yaml = gateway_yaml(&["*"])
        + &vs(
            "vs",
            "  hosts: [\"*\"]\n  gateways: [gw]\n",
            &format!(
                "  - match: [{{headers: {{\":status\": {{exact: \"200\"}}}}}}]\n{}",
                route("a")
            ),
        );
    let (compiled, report) = meshgate::compile::compile(&loaded(&yaml), &Default::default());
    assert!(compiled.is_none());
    let e = report.errors[0].to_string();
    assert!(
        e.contains("spec.http[0].match[0].headers.:status: invalid pseudo-header \":status\""),
        "{e}"
    );
}

fn loaded(yaml: &str) -> meshgate::config::Resources {
    meshgate::config::load_str(yaml, "t.yaml", "default").0
}

#[tokio::test]
async fn match_level_gateways_only_match_at_the_named_gateways() {
    let http = [
        format!("  - match: [{{gateways: [mesh]}}]\n{}", route("a")),
        format!(
            "  - match: [{{uri: {{prefix: /gw}}, gateways: [gw]}}]\n{}",
            route("b")
        ),
        format!(
            "  - match: [{{uri: {{prefix: /other}}, gateways: [other-gw]}}]\n{}",
            route("c")
        ),
        route("d").replacen("    ", "  - ", 1),
    ]
    .concat();
    let other_gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: other-gw}\nspec:\n  servers:\n  - port: {number: 9090, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n---\n";
    let (gw, _u) = setup(&format!(
        "{other_gw}{}",
        vs(
            "vs",
            "  hosts: [\"*\"]\n  gateways: [gw, other-gw, mesh]\n",
            &http
        )
    ))
    .await;
    let c = Client::http1(gw.addr());
    assert_eq!(
        c.get("x", "/").await.upstream(),
        "d",
        "a [mesh]-only match falls through at a gateway"
    );
    assert_eq!(c.get("x", "/gw").await.upstream(), "b");
    assert_eq!(c.get("x", "/other").await.upstream(), "d");
    let other = Client::http1(gw.port(9090));
    assert_eq!(other.get("x", "/other").await.upstream(), "c");
    assert_eq!(other.get("x", "/gw").await.upstream(), "d");
}

#[tokio::test]
async fn redirect_prefix_rewrite_without_a_uri_match_replaces_the_leading_slash() {
    let yaml = gateway_yaml(&["*"])
        + &vs(
            "vs",
            "  hosts: [\"*\"]\n  gateways: [gw]\n",
            "  - match: [{headers: {x-v2: {exact: \"1\"}}}]\n    redirect: {prefixRewrite: /v2/}\n  - redirect: {authority: new.example.com, prefixRewrite: /}\n",
        );
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    let r = c.get("old.example.com", "/a/b?q=1").await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("http://new.example.com/a/b?q=1"),
        "Envoy treats the missing match as prefix /"
    );
    let r = c
        .send(
            c.request("old.example.com", "/a/b")
                .header("x-v2", "1")
                .body(Full::new(Default::default()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.header("location"), Some("http://old.example.com/v2/a/b"));
}

/// A root VirtualService in `edge` delegating to `shop/cart` and `shop/catalog`.
fn delegation(catalog_export: &str) -> String {
    let root = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: root, namespace: edge}\nspec:\n  hosts: [\"shop.example.com\"]\n  gateways: [default/gw]\n  http:\n  - name: cart\n    match: [{uri: {prefix: /cart}}]\n    headers: {response: {set: {x-root: cart}}}\n    delegate: {name: cart, namespace: shop}\n  - match: [{uri: {prefix: /catalog}}]\n    delegate: {name: catalog, namespace: shop}\n  - match: [{uri: {prefix: /gone}}]\n    delegate: {name: missing, namespace: shop}\n  - route: [{destination: {host: e.svc}}]\n---\n";
    let cart = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: cart, namespace: shop}\nspec:\n  http:\n  - name: checkout\n    match: [{uri: {prefix: /cart/checkout}}]\n    route: [{destination: {host: b.svc}}]\n  - match: [{uri: {prefix: /admin}}]\n    route: [{destination: {host: c.svc}}]\n  - headers: {response: {set: {x-leaf: own}}}\n    route: [{destination: {host: a.svc}}]\n---\n";
    let catalog = format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: catalog, namespace: shop}}\nspec:\n  exportTo: [{catalog_export}]\n  http:\n  - route: [{{destination: {{host: d.svc}}}}]\n---\n");
    format!("{root}{cart}{catalog}")
}

#[tokio::test]
async fn delegate_routes_merge_into_the_root() {
    let (gw, _u) = setup(&delegation("edge")).await;
    let c = Client::http1(gw.addr());
    let host = "shop.example.com";
    let r = c.get(host, "/cart/checkout/1").await;
    assert_eq!(r.upstream(), "b", "delegate match inside the root match");
    assert_eq!(r.header("x-root"), Some("cart"), "root headers inherited");
    // The delegate's /admin route conflicts with the root's /cart: dropped, so /cart/admin goes to
    // the delegate's catch-all (merged with the root match /cart), and /admin to the root's last.
    assert_eq!(c.get(host, "/cart/admin").await.upstream(), "a");
    let r = c.get(host, "/cart/other").await;
    assert_eq!(r.upstream(), "a");
    assert_eq!(
        r.header("x-leaf"),
        Some("own"),
        "the delegate's own headers win"
    );
    assert_eq!(r.header("x-root"), None);
    assert_eq!(c.get(host, "/admin").await.upstream(), "e");
    assert_eq!(c.get(host, "/catalog/1").await.upstream(), "d");
    assert_eq!(
        c.get(host, "/gone").await.upstream(),
        "e",
        "a missing delegate drops only its route"
    );
}

#[tokio::test]
async fn a_delegate_not_exported_to_the_root_namespace_is_not_used() {
    let (gw, _u) = setup(&delegation("\".\"")).await;
    let c = Client::http1(gw.addr());
    assert_eq!(
        c.get("shop.example.com", "/catalog/1").await.upstream(),
        "e"
    );
    assert_eq!(
        c.get("shop.example.com", "/cart/checkout").await.upstream(),
        "b"
    );
}

#[test]
fn delegate_rules_are_validated() {
    let yaml = delegation("edge").replace(
        "  http:\n  - name: checkout",
        "  gateways: [default/gw]\n  http:\n  - name: checkout",
    ) + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad-root, namespace: edge}\nspec:\n  hosts: [\"b.example.com\"]\n  gateways: [default/gw]\n  http:\n  - delegate: {name: cart, namespace: shop}\n    route: [{destination: {host: a.svc}}]\n---\n"
        + &gateway_yaml(&["*"]);
    let (compiled, report) = meshgate::compile::compile(&loaded(&yaml), &Default::default());
    assert!(compiled.is_none());
    let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
    assert!(
        errors.iter().any(|e| e.contains(
            "VirtualService shop/cart: spec.gateways: not allowed in a delegate VirtualService"
        )),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|e| e.contains(
            "VirtualService edge/bad-root: spec.http[0]: `delegate` and `route` cannot be used together"
        )),
        "{errors:#?}"
    );
    let warnings: Vec<String> = report.warnings.iter().map(|e| e.to_string()).collect();
    assert!(
        warnings.iter().any(|w| w.contains(
            "VirtualService edge/root: spec.http[2].delegate: delegate VirtualService shop/missing does not exist"
        )),
        "{warnings:#?}"
    );
}
