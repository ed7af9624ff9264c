//! Route actions and gateway-made responses end to end: weighted split, subsets, redirect,
//! directResponse, rewrite, header operations, forwarding headers, and Envoy's error replies.

use crate::support;

use support::{gateway_yaml, static_service, Client, TestGateway, Upstream};

fn vs(http: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n{http}---\n")
}

#[tokio::test]
async fn weighted_split_follows_weights() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let mut yaml = gateway_yaml(&["*"]);
    yaml.push_str(&static_service("a.svc", &[(&a, &[])]));
    yaml.push_str(&static_service("b.svc", &[(&b, &[])]));
    yaml.push_str(&vs("  - route:\n    - {destination: {host: a.svc}, weight: 80}\n    - {destination: {host: b.svc}, weight: 20}\n"));
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    let n = 2000;
    let mut to_a = 0;
    for _ in 0..n {
        if c.get("x", "/").await.upstream() == "a" {
            to_a += 1;
        }
    }
    // Binomial(2000, 0.8): sd ≈ 17.9; ±5 sd = ±90 keeps this from ever flaking.
    assert!((1510..=1690).contains(&to_a), "a got {to_a} of {n}");
    assert_eq!(a.hits() + b.hits(), n);
}

#[tokio::test]
async fn weights_need_not_sum_to_100_and_zero_weight_gets_nothing() {
    let (a, b, z) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("z").await,
    );
    let mut yaml = gateway_yaml(&["*"]);
    for (u, h) in [(&a, "a.svc"), (&b, "b.svc"), (&z, "z.svc")] {
        yaml.push_str(&static_service(h, &[(u, &[])]));
    }
    yaml.push_str(&vs("  - route:\n    - {destination: {host: a.svc}, weight: 1}\n    - {destination: {host: b.svc}, weight: 1}\n    - {destination: {host: z.svc}, weight: 0}\n"));
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    for _ in 0..400 {
        c.get("x", "/").await;
    }
    assert_eq!(z.hits(), 0);
    // Binomial(400, 0.5): sd = 10; ±6 sd.
    assert!((140..=260).contains(&a.hits()), "a got {}", a.hits());
}

#[tokio::test]
async fn subsets_select_endpoints_by_label() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let mut yaml = gateway_yaml(&["*"]);
    yaml.push_str(&static_service(
        "reviews.svc",
        &[(&v1, &[("version", "v1")]), (&v2, &[("version", "v2")])],
    ));
    yaml.push_str("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews.svc\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n  - {name: v3, labels: {version: v3}}\n---\n");
    yaml.push_str(&vs(concat!(
        "  - match: [{headers: {end-user: {exact: jason}}}]\n    route: [{destination: {host: reviews.svc, subset: v2}}]\n",
        "  - match: [{uri: {prefix: /v3}}]\n    route: [{destination: {host: reviews.svc, subset: v3}}]\n",
        "  - match: [{uri: {prefix: /nosuch}}]\n    route: [{destination: {host: reviews.svc, subset: nosuch}}]\n",
        "  - route: [{destination: {host: reviews.svc, subset: v1}}]\n",
    )));
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    for _ in 0..5 {
        assert_eq!(c.get("x", "/").await.upstream(), "v1");
    }
    let req = c
        .request("x", "/")
        .header("end-user", "jason")
        .body(Default::default())
        .unwrap();
    assert_eq!(c.send(req).await.upstream(), "v2");
    // Defined subset, no endpoint has its labels: the cluster exists but is empty → UH.
    let r = c.get("x", "/v3").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (503, "no healthy upstream")
    );
    // Subset the DestinationRule does not define: no cluster → 503 NC, empty body.
    let r = c.get("x", "/nosuch").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (503, ""));
}

#[tokio::test]
async fn redirects_build_location_like_envoy() {
    let yaml = gateway_yaml(&["*"]) + &vs(concat!(
        "  - match: [{uri: {exact: /old}}]\n    redirect: {uri: /new}\n",
        "  - match: [{uri: {prefix: /docs/}}]\n    redirect: {prefixRewrite: /documentation/, redirectCode: 308}\n",
        "  - match: [{uri: {exact: /secure}}]\n    redirect: {scheme: https}\n",
        "  - match: [{uri: {exact: /elsewhere}}]\n    redirect: {authority: other.example.com, port: 8443, redirectCode: 302}\n",
        "  - match: [{uri: {exact: /req-port}}]\n    redirect: {authority: b.example.com, derivePort: FROM_REQUEST_PORT}\n",
    ));
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    let r = c.get("shop.example.com", "/old?x=1").await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("http://shop.example.com/new?x=1")
    );
    assert_eq!(r.body, "");
    let r = c.get("shop.example.com", "/docs/a/b").await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("http://shop.example.com/documentation/a/b")
    );
    // Scheme change drops the old scheme's default port, keeps others.
    let r = c.get("shop.example.com:80", "/secure").await;
    assert_eq!(
        r.header("location"),
        Some("https://shop.example.com/secure")
    );
    let r = c.get("shop.example.com:8080", "/secure").await;
    assert_eq!(
        r.header("location"),
        Some("https://shop.example.com:8080/secure")
    );
    let r = c.get("shop.example.com:8080", "/elsewhere").await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("http://other.example.com:8443/elsewhere")
    );
    let r = c.get("shop.example.com", "/req-port").await;
    assert_eq!(
        r.header("location"),
        Some("http://b.example.com:8080/req-port")
    );
}

#[tokio::test]
async fn direct_response_with_and_without_body() {
    let yaml = gateway_yaml(&["*"]) + &vs(concat!(
        "  - match: [{uri: {exact: /hello}}]\n    directResponse: {status: 200, body: {string: \"hi there\"}}\n",
        "  - match: [{uri: {exact: /json}}]\n    directResponse: {status: 418, body: {string: \"{}\"}}\n    headers: {response: {set: {content-type: application/json}}}\n",
        "  - match: [{uri: {exact: /empty}}]\n    directResponse: {status: 204}\n",
        "  - match: [{uri: {exact: /b64}}]\n    directResponse: {status: 200, body: {bytes: aGVsbG8=}}\n",
    ));
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    let r = c.get("x", "/hello").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "hi there"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("content-length"), Some("8"));
    assert_eq!(r.header("server"), Some("istio-envoy"));
    let r = c.get("x", "/json").await;
    assert_eq!(r.status, 418);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = c.get("x", "/empty").await;
    assert_eq!(r.status, 204);
    assert!(r.header("content-type").is_none());
    assert_eq!(c.get("x", "/b64").await.body, "hello");
}

#[tokio::test]
async fn rewrite_uri_regex_and_authority() {
    let a = Upstream::start("a").await;
    let yaml = gateway_yaml(&["*"]) + &static_service("a.svc", &[(&a, &[])]) + &vs(concat!(
        "  - match: [{uri: {prefix: /api/v1/}}]\n    rewrite: {uri: /}\n    route: [{destination: {host: a.svc}}]\n",
        "  - match: [{uri: {exact: /exact}}]\n    rewrite: {uri: /replaced, authority: backend.internal}\n    route: [{destination: {host: a.svc}}]\n",
        "  - match: [{uri: {prefix: /users/}}]\n    rewrite: {uriRegexRewrite: {match: \"^/users/([^/]+)/profile$\", rewrite: \"/profiles/\\\\1\"}}\n    route: [{destination: {host: a.svc}}]\n",
        "  - match: [{uri: {prefix: /}}]\n    rewrite: {uri: /v2}\n    route: [{destination: {host: a.svc}}]\n",
    ));
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    let r = c.get("shop", "/api/v1/orders?id=7").await;
    assert_eq!(r.field("path"), Some("/orders?id=7"));
    assert_eq!(r.field("h:x-envoy-original-path"), Some("/api/v1/orders"));
    let r = c.get("shop", "/exact").await;
    assert_eq!(r.field("path"), Some("/replaced"));
    assert_eq!(r.field("h:host"), Some("backend.internal"));
    assert_eq!(
        c.get("shop", "/users/ann/profile").await.field("path"),
        Some("/profiles/ann")
    );
    // Prefix "/" replaced by "/v2": Istio's documented gotcha.
    assert_eq!(
        c.get("shop", "/orders").await.field("path"),
        Some("/v2orders")
    );
}

#[tokio::test]
async fn header_operations_route_and_destination_level() {
    let a = Upstream::start("a").await;
    let yaml = gateway_yaml(&["*"]) + &static_service("a.svc", &[(&a, &[])]) + &vs(concat!(
        "  - headers:\n      request:\n        set: {x-set: route, x-client-ip: \"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%\", x-copy: \"%REQ(x-src)%\", x-pct: \"100%%\"}\n        add: {x-add: one}\n        remove: [x-secret]\n",
        "      response:\n        set: {x-resp: set}\n        remove: [x-upstream]\n",
        "    route:\n    - destination: {host: a.svc}\n      headers: {request: {set: {x-dest: yes}}, response: {add: {x-dest-resp: yes}}}\n",
    ));
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    let req = c
        .request("x", "/")
        .header("x-secret", "s")
        .header("x-src", "copied")
        .header("x-set", "client")
        .body(Default::default())
        .unwrap();
    let r = c.send(req).await;
    assert_eq!(r.field("h:x-set"), Some("route"));
    assert_eq!(r.field("h:x-client-ip"), Some("127.0.0.1"));
    assert_eq!(r.field("h:x-copy"), Some("copied"));
    assert_eq!(r.field("h:x-pct"), Some("100%"));
    assert_eq!(r.field("h:x-add"), Some("one"));
    assert_eq!(r.field("h:x-dest"), Some("yes"));
    assert_eq!(r.field("h:x-secret"), None);
    assert_eq!(r.header("x-resp"), Some("set"));
    assert_eq!(r.header("x-dest-resp"), Some("yes"));
    assert_eq!(r.header("x-upstream"), None);
}

#[tokio::test]
async fn forwarding_headers_like_an_istio_gateway() {
    let a = Upstream::start("a").await;
    let yaml = gateway_yaml(&["*"])
        + &static_service("a.svc", &[(&a, &[])])
        + &vs("  - route: [{destination: {host: a.svc}}]\n");
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    let req = c
        .request("shop.example.com", "/p")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-envoy-retry-on", "5xx")
        .header("connection", "x-private")
        .header("x-private", "hop")
        .body(Default::default())
        .unwrap();
    let r = c.send(req).await;
    assert_eq!(r.field("h:host"), Some("shop.example.com"));
    assert_eq!(r.field("h:x-forwarded-for"), Some("203.0.113.7, 127.0.0.1"));
    assert_eq!(r.field("h:x-forwarded-proto"), Some("http"));
    assert_eq!(r.field("h:x-envoy-external-address"), Some("127.0.0.1"));
    assert_eq!(r.field("h:x-envoy-attempt-count"), Some("1"));
    assert_eq!(r.field("h:x-request-id").map(str::len), Some(36));
    assert_eq!(
        r.field("h:x-envoy-retry-on"),
        None,
        "internal x-envoy-* headers from clients are dropped"
    );
    assert_eq!(
        r.field("h:x-private"),
        None,
        "headers nominated by Connection are hop-by-hop"
    );
    // A client's request id is kept.
    let req = c
        .request("x", "/")
        .header("x-request-id", "abc-123")
        .body(Default::default())
        .unwrap();
    assert_eq!(c.send(req).await.field("h:x-request-id"), Some("abc-123"));
    // Response side: server overwritten, service time added, hop-by-hop removed.
    assert_eq!(r.header("server"), Some("istio-envoy"));
    assert!(r
        .header("x-envoy-upstream-service-time")
        .unwrap()
        .parse::<u64>()
        .is_ok());
    assert_eq!(r.header("x-upstream"), Some("a"));
}

#[tokio::test]
async fn envoy_error_replies() {
    let dead_port = support::closed_addr().port(); // connections are refused
    let yaml = gateway_yaml(&["*"])
        + &format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: dead}}\nspec:\n  hosts: [dead.svc]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {dead_port}}}}}]\n---\n")
        + "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: none}\nspec:\n  hosts: [none.svc]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: NONE\n---\n"
        + &vs(concat!(
            "  - match: [{uri: {prefix: /dead}}]\n    route: [{destination: {host: dead.svc}}]\n",
            "  - match: [{uri: {prefix: /none}}]\n    route: [{destination: {host: none.svc}}]\n",
            "  - match: [{uri: {prefix: /badport}}]\n    route: [{destination: {host: none.svc, port: {number: 81}}}]\n",
            "  - match: [{uri: {prefix: /unresolvable}}]\n    route: [{destination: {host: no-such-host.invalid}}]\n",
        ));
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    let r = c.get("x", "/dead").await;
    assert_eq!(r.status, 503);
    // Istio's default retry policy retries connect failures twice, so Envoy's body says so.
    assert!(
        r.body.starts_with("upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused"),
        "{}",
        r.body
    );
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert!(
        r.header("x-envoy-upstream-service-time").is_none(),
        "local replies carry no service time"
    );
    let r = c.get("x", "/none").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (503, "no healthy upstream")
    );
    let r = c.get("x", "/badport").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (503, ""),
        "port the service does not declare: NC"
    );
    let r = c.get("x", "/unresolvable").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (503, ""),
        "a name that does not resolve: NC"
    );
    let r = c.get("x", "/nothing-matches").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (404, ""));
}
