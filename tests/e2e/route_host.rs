//! Virtual-host selection end to end: exact beats wildcard beats `*`, port stripped, case folded,
//! no fallback between virtual hosts, Gateway/VirtualService host intersection.

use crate::support;

use support::{static_service, Client, TestGateway, Upstream};

fn vs(name: &str, ns: &str, hosts: &str, gateways: &str, http: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: {hosts}\n  gateways: {gateways}\n  http:\n{http}---\n")
}

fn to(host: &str) -> String {
    format!("  - route: [{{destination: {{host: {host}}}}}]\n")
}

#[tokio::test]
async fn exact_beats_longest_wildcard_beats_star() {
    let (a, b, c, d) = (
        Upstream::start("exact").await,
        Upstream::start("wild").await,
        Upstream::start("longer-wild").await,
        Upstream::start("star").await,
    );
    let mut yaml = support::gateway_yaml(&["*"]);
    for (u, h) in [(&a, "a.svc"), (&b, "b.svc"), (&c, "c.svc"), (&d, "d.svc")] {
        yaml.push_str(&static_service(h, &[(u, &[])]));
    }
    yaml.push_str(&vs(
        "v1",
        "default",
        "[api.example.com]",
        "[gw]",
        &to("a.svc"),
    ));
    yaml.push_str(&vs(
        "v2",
        "default",
        "[\"*.example.com\"]",
        "[gw]",
        &to("b.svc"),
    ));
    yaml.push_str(&vs(
        "v3",
        "default",
        "[\"*.eu.example.com\"]",
        "[gw]",
        &to("c.svc"),
    ));
    yaml.push_str(&vs("v4", "default", "[\"*\"]", "[gw]", &to("d.svc")));
    let gw = TestGateway::start(&yaml).await;
    let cl = Client::http1(gw.addr());
    assert_eq!(cl.get("api.example.com", "/").await.upstream(), "exact");
    assert_eq!(
        cl.get("API.Example.com:8080", "/").await.upstream(),
        "exact",
        "port stripped, case folded"
    );
    assert_eq!(cl.get("www.example.com", "/").await.upstream(), "wild");
    assert_eq!(
        cl.get("x.eu.example.com", "/").await.upstream(),
        "longer-wild"
    );
    assert_eq!(
        cl.get("example.com", "/").await.upstream(),
        "star",
        "*.example.com does not contain example.com"
    );
    assert_eq!(cl.get("other.org", "/").await.upstream(), "star");
}

#[tokio::test]
async fn no_fallback_to_another_virtual_host() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let mut yaml = support::gateway_yaml(&["*"]);
    yaml.push_str(&static_service("a.svc", &[(&a, &[])]));
    yaml.push_str(&static_service("b.svc", &[(&b, &[])]));
    yaml.push_str(&vs(
        "v1",
        "default",
        "[api.example.com]",
        "[gw]",
        "  - match: [{uri: {prefix: /only}}]\n    route: [{destination: {host: a.svc}}]\n",
    ));
    yaml.push_str(&vs(
        "v2",
        "default",
        "[\"*.example.com\"]",
        "[gw]",
        &to("b.svc"),
    ));
    let gw = TestGateway::start(&yaml).await;
    let cl = Client::http1(gw.addr());
    assert_eq!(cl.get("api.example.com", "/only").await.upstream(), "a");
    let r = cl.get("api.example.com", "/elsewhere").await;
    assert_eq!(r.status, 404, "the wildcard vhost is not consulted");
    assert_eq!(r.body, "");
    assert_eq!(r.header("content-length"), Some("0"));
}

#[tokio::test]
async fn gateway_hosts_intersect_virtual_service_hosts() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let mut yaml = support::gateway_yaml(&["*.example.com", "team/*.team.io"]);
    yaml.push_str(&static_service("a.svc", &[(&a, &[])]));
    yaml.push_str(&static_service("b.svc", &[(&b, &[])]));
    // VS host "*" narrows to the server's "*.example.com".
    yaml.push_str(&vs(
        "star",
        "default",
        "[\"*\"]",
        "[default/gw]",
        &to("a.svc"),
    ));
    // Server host team/*.team.io only admits VirtualServices from namespace "team".
    yaml.push_str(&vs(
        "wrong-ns",
        "default",
        "[other.team.io]",
        "[default/gw]",
        &to("a.svc"),
    ));
    yaml.push_str(&vs(
        "team",
        "team",
        "[app.team.io]",
        "[default/gw]",
        &to("b.svc.default.svc.cluster.local"),
    ));
    yaml = yaml.replace("hosts: [b.svc]", "hosts: [b.svc.default.svc.cluster.local]");
    let gw = TestGateway::start(&yaml).await;
    let cl = Client::http1(gw.addr());
    assert_eq!(cl.get("shop.example.com", "/").await.upstream(), "a");
    assert_eq!(
        cl.get("shop.example.org", "/").await.status,
        404,
        "outside the server's hosts"
    );
    assert_eq!(cl.get("app.team.io", "/").await.upstream(), "b");
    assert_eq!(
        cl.get("other.team.io", "/").await.status,
        404,
        "VS from namespace default is not admitted"
    );
}

#[tokio::test]
async fn virtual_service_without_gateways_is_mesh_only() {
    let a = Upstream::start("a").await;
    let mut yaml = support::gateway_yaml(&["*"]);
    yaml.push_str(&static_service("a.svc", &[(&a, &[])]));
    yaml.push_str("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: mesh}\nspec:\n  hosts: [\"*\"]\n  http:\n  - route: [{destination: {host: a.svc}}]\n");
    let gw = TestGateway::start(&yaml).await;
    let r = Client::http1(gw.addr()).get("anything", "/").await;
    assert_eq!(r.status, 404);
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn https_redirect_server_answers_301() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers:\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: [secure.example.com]\n    tls: {httpsRedirect: true}\n";
    let gw = TestGateway::start(yaml).await;
    let r = Client::http1(gw.addr())
        .get("secure.example.com", "/a/b?x=1")
        .await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://secure.example.com/a/b?x=1")
    );
}
