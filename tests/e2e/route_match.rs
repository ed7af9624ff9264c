//! Request matching end to end: every match type, AND inside a match, OR across matches,
//! first match wins, catch-alls last. Real upstreams, real gateway, real client.

use crate::support;

use support::{gateway_yaml, static_service, Client, TestGateway, Upstream};

/// Upstreams `a`..`e` behind hosts `a.svc`..`e.svc`, and a VirtualService with `http` routes.
async fn setup(http: &str) -> (TestGateway, Vec<Upstream>) {
    support::five_upstreams(&format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n{http}"
    ))
    .await
}

fn route(to: &str) -> String {
    format!("    route: [{{destination: {{host: {to}.svc}}}}]\n")
}

#[tokio::test]
async fn uri_exact_prefix_regex() {
    let http = format!(
        "  - match: [{{uri: {{exact: /exact}}}}]\n{}  - match: [{{uri: {{prefix: /pre}}}}]\n{}  - match: [{{uri: {{regex: \"/items/[0-9]+\"}}}}]\n{}",
        route("a"),
        route("b"),
        route("c")
    );
    let (gw, _u) = setup(&http).await;
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("x", "/exact").await.upstream(), "a");
    assert_eq!(
        c.get("x", "/exact?q=1").await.upstream(),
        "a",
        "query is not part of the path"
    );
    assert_eq!(c.get("x", "/exact/more").await.status, 404);
    assert_eq!(
        c.get("x", "/prefix-is-not-segment-aware").await.upstream(),
        "b"
    );
    assert_eq!(c.get("x", "/items/123").await.upstream(), "c");
    // Regex is a full match (anchored), as Envoy's safe_regex.
    assert_eq!(c.get("x", "/items/123/x").await.status, 404);
    assert_eq!(c.get("x", "/v1/items/1").await.status, 404);
}

#[tokio::test]
async fn ignore_uri_case_applies_to_exact_and_prefix() {
    let http = format!(
        "  - match: [{{uri: {{exact: /Login}}, ignoreUriCase: true}}]\n{}  - match: [{{uri: {{prefix: /API}}, ignoreUriCase: true}}]\n{}",
        route("a"),
        route("b")
    );
    let (gw, _u) = setup(&http).await;
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("x", "/login").await.upstream(), "a");
    assert_eq!(c.get("x", "/LOGIN").await.upstream(), "a");
    assert_eq!(c.get("x", "/api/v1").await.upstream(), "b");
    assert_eq!(c.get("x", "/other").await.status, 404);
}

#[tokio::test]
async fn headers_exact_prefix_regex_presence_and_without() {
    let http = format!(
        concat!(
            "  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]\n{}",
            "  - match: [{{headers: {{x-tenant: {{prefix: acme-}}}}}}]\n{}",
            "  - match: [{{headers: {{x-version: {{regex: \"v[0-9]+\"}}}}}}]\n{}",
            "  - match: [{{headers: {{x-debug: {{}}}}}}]\n{}",
            "  - match: [{{uri: {{prefix: /without}}, withoutHeaders: {{x-block: {{exact: yes}}}}}}]\n{}",
        ),
        route("a"),
        route("b"),
        route("c"),
        route("d"),
        route("e")
    );
    let (gw, _u) = setup(&http).await;
    let c = Client::http1(gw.addr());
    let get = |k: &'static str, v: &'static str, path: &'static str| {
        let req = c
            .request("x", path)
            .header(k, v)
            .body(Default::default())
            .unwrap();
        c.send(req)
    };
    assert_eq!(get("end-user", "jason", "/").await.upstream(), "a");
    assert_eq!(
        get("end-user", "Jason", "/").await.status,
        404,
        "exact is case-sensitive"
    );
    assert_eq!(get("x-tenant", "acme-prod", "/").await.upstream(), "b");
    assert_eq!(get("x-version", "v12", "/").await.upstream(), "c");
    assert_eq!(
        get("x-version", "v12-beta", "/").await.status,
        404,
        "regex is anchored"
    );
    assert_eq!(
        get("x-debug", "", "/").await.upstream(),
        "d",
        "{{}} means present, any value"
    );
    assert_eq!(
        c.get("x", "/without").await.upstream(),
        "e",
        "absent header satisfies withoutHeaders"
    );
    assert_eq!(get("x-block", "no", "/without").await.upstream(), "e");
    assert_eq!(get("x-block", "yes", "/without").await.status, 404);
    // Header names match case-insensitively (HTTP/1 names are case-insensitive on the wire).
    assert_eq!(get("End-User", "jason", "/").await.upstream(), "a");
}

#[tokio::test]
async fn method_authority_and_query_params() {
    let http = format!(
        concat!(
            "  - match: [{{method: {{exact: POST}}, uri: {{prefix: /m}}}}]\n{}",
            "  - match: [{{authority: {{exact: \"api.example.com:8080\"}}}}]\n{}",
            "  - match: [{{queryParams: {{debug: {{exact: \"1\"}}, v: {{regex: \"[a-z]+\"}}}}}}]\n{}",
            "  - match: [{{queryParams: {{flag: {{}}}}}}]\n{}",
        ),
        route("a"),
        route("b"),
        route("c"),
        route("d")
    );
    let (gw, _u) = setup(&http).await;
    let c = Client::http1(gw.addr());
    let post = c
        .request("x", "/m")
        .method("POST")
        .body(Default::default())
        .unwrap();
    assert_eq!(c.send(post).await.upstream(), "a");
    assert_eq!(
        c.get("x", "/m").await.status,
        404,
        "GET does not match method POST"
    );
    // authority keeps its port, unlike virtual-host selection.
    assert_eq!(c.get("api.example.com:8080", "/").await.upstream(), "b");
    assert_eq!(c.get("api.example.com", "/").await.status, 404);
    assert_eq!(c.get("x", "/q?debug=1&v=abc").await.upstream(), "c");
    assert_eq!(
        c.get("x", "/q?debug=1&v=ABC").await.status,
        404,
        "both parameters must hold (AND)"
    );
    assert_eq!(c.get("x", "/q?flag").await.upstream(), "d");
    assert_eq!(c.get("x", "/q?flag=anything").await.upstream(), "d");
}

#[tokio::test]
async fn matches_are_or_conditions_are_and_first_match_wins() {
    let http = format!(
        concat!(
            // One route, two OR'ed matches; the first has two AND'ed conditions.
            "  - match:\n    - {{uri: {{prefix: /both}}, headers: {{x-a: {{exact: \"1\"}}}}}}\n    - {{uri: {{exact: /alt}}}}\n{}",
            // Would also match /both...: first match wins, so it only gets what the first misses.
            "  - match: [{{uri: {{prefix: /both}}}}]\n{}",
        ),
        route("a"),
        route("b")
    );
    let (gw, _u) = setup(&http).await;
    let c = Client::http1(gw.addr());
    let req = c
        .request("x", "/both")
        .header("x-a", "1")
        .body(Default::default())
        .unwrap();
    assert_eq!(c.send(req).await.upstream(), "a");
    assert_eq!(
        c.get("x", "/both").await.upstream(),
        "b",
        "AND: header missing, falls to the next route"
    );
    assert_eq!(
        c.get("x", "/alt").await.upstream(),
        "a",
        "OR: the second match entry"
    );
}

#[tokio::test]
async fn catch_all_of_an_older_virtual_service_moves_last() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let mut yaml = gateway_yaml(&["*"]);
    yaml.push_str(&static_service("a.svc", &[(&a, &[])]));
    yaml.push_str(&static_service("b.svc", &[(&b, &[])]));
    // "aaa" sorts first: its catch-all would shadow "bbb" if it were not moved to the end.
    yaml.push_str("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: aaa}\nspec:\n  hosts: [shop.example.com]\n  gateways: [gw]\n  http:\n  - route: [{destination: {host: a.svc}}]\n---\n");
    yaml.push_str("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bbb}\nspec:\n  hosts: [shop.example.com]\n  gateways: [gw]\n  http:\n  - match: [{uri: {prefix: /api}}]\n    route: [{destination: {host: b.svc}}]\n");
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("shop.example.com", "/api/cart").await.upstream(), "b");
    assert_eq!(c.get("shop.example.com", "/").await.upstream(), "a");
}

#[tokio::test]
async fn match_port_and_gateway_conditions_are_applied_at_build_time() {
    let http = format!(
        concat!(
            "  - match: [{{uri: {{prefix: /p}}, port: 9999}}]\n{}",
            "  - match: [{{uri: {{prefix: /p}}, port: 8080}}]\n{}",
            "  - match: [{{uri: {{prefix: /g}}, gateways: [other-gw]}}]\n{}",
            "  - match: [{{uri: {{prefix: /g}}, sourceLabels: {{app: istio-ingressgateway}}}}]\n{}",
        ),
        route("a"),
        route("b"),
        route("c"),
        route("d")
    );
    let mut u = Vec::new();
    let mut yaml = gateway_yaml(&["*"]);
    yaml.push_str("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: other-gw}\nspec:\n  servers:\n  - port: {number: 9090, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n---\n");
    for name in ["a", "b", "c", "d"] {
        let up = Upstream::start(name).await;
        yaml.push_str(&static_service(&format!("{name}.svc"), &[(&up, &[])]));
        u.push(up);
    }
    yaml.push_str(&format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw, other-gw]\n  http:\n{http}"));
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    assert_eq!(
        c.get("x", "/p").await.upstream(),
        "b",
        "port 9999 entry is dropped on port 8080"
    );
    assert_eq!(
        c.get("x", "/g").await.upstream(),
        "d",
        "gateways: [other-gw] entry is not on gw"
    );
    let c9090 = Client::http1(gw.port(9090));
    assert_eq!(c9090.get("x", "/g").await.upstream(), "c");
}

#[tokio::test]
async fn source_namespace_and_export_to_are_applied_at_build_time() {
    // meshgate is the gateway "pod" in istio-system, as `--proxy-namespace` defaults.
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let mut yaml = gateway_yaml(&["*"]);
    // s.svc: a hidden ServiceEntry (exportTo ".") first, then the visible one; targetPort picks
    // the endpoint port when the endpoint names none.
    for (ns, export, up) in [("hidden", "[\".\"]", &a), ("default", "[\"*\"]", &b)] {
        yaml.push_str(&format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: s, namespace: {ns}}}\nspec:\n  hosts: [s.svc]\n  exportTo: {export}\n  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {}}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1}}]\n---\n",
            up.addr.port()
        ));
    }
    // A DestinationRule only its own namespace sees: its subset does not exist for the gateway.
    yaml.push_str("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: s, namespace: other}\nspec:\n  host: s.svc\n  exportTo: [\".\"]\n  subsets: [{name: v1, labels: {}}]\n---\n");
    yaml.push_str(concat!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [shown.example]\n  gateways: [gw]\n  exportTo: [\"*\"]\n  http:\n",
        "  - match: [{uri: {prefix: /ns}, sourceNamespace: other}]\n    route: [{destination: {host: nowhere.svc}}]\n",
        "  - match: [{uri: {prefix: /ns}, sourceNamespace: istio-system}]\n    route: [{destination: {host: s.svc}}]\n",
        "  - match: [{uri: {prefix: /subset}}]\n    route: [{destination: {host: s.svc, subset: v1}}]\n---\n",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: hidden}\nspec:\n  hosts: [hidden.example]\n  gateways: [gw]\n  exportTo: [\".\"]\n  http:\n  - route: [{destination: {host: s.svc}}]\n",
    ));
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    let r = c.get("shown.example", "/ns").await;
    assert_eq!(
        r.upstream(),
        "b",
        "sourceNamespace, exportTo and targetPort"
    );
    assert_eq!(c.get("shown.example", "/subset").await.status, 503);
    assert_eq!(c.get("hidden.example", "/").await.status, 404);
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn scheme_condition_sees_http_on_a_plain_listener() {
    let http = format!(
        "  - match: [{{scheme: {{exact: https}}}}]\n{}  - match: [{{scheme: {{exact: http}}}}]\n{}",
        route("a"),
        route("b")
    );
    let (gw, _ups) = setup(&http).await;
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("x", "/").await.upstream(), "b");
}
