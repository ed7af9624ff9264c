//! `GET /explain` on the admin port: the live route explainer, over real sockets.

use crate::support;

use meshgate::OpsPort;
use serde_json::Value;
use support::explain::shop_config;
use support::{Client, TestGateway, Upstream};

struct Setup {
    gw: TestGateway,
    admin: Client,
    a1: Upstream,
    a2: Upstream,
    b: Upstream,
}

async fn setup() -> Setup {
    let (a1, a2, b) = (
        Upstream::start("a1").await,
        Upstream::start("a2").await,
        Upstream::start("b").await,
    );
    let gw = TestGateway::start(&shop_config(8080, a1.addr, a2.addr, b.addr))
        .await
        .with_ops()
        .await;
    let admin = Client::http1(gw.ops(OpsPort::Admin));
    Setup {
        gw,
        admin,
        a1,
        a2,
        b,
    }
}

/// `GET /explain?<query>&format=json`, parsed.
async fn explain(admin: &Client, query: &str) -> Value {
    let r = admin
        .get("admin", &format!("/explain?{query}&format=json"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

fn reasons(v: &Value) -> Vec<String> {
    v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["reason"].as_str().unwrap_or("MATCH").to_owned())
        .collect()
}

#[tokio::test]
async fn explains_a_forward_with_live_endpoints_and_policy() {
    let s = setup().await;
    let v = explain(
        &s.admin,
        "method=GET&url=http://shop.example.com:8080/cart/1&header=x-canary:yes",
    )
    .await;
    assert_eq!(v["request"]["method"], "GET");
    assert_eq!(v["request"]["authority"], "shop.example.com:8080");
    assert_eq!(v["request"]["headers"][0], "x-canary: yes");
    assert_eq!(v["listener"], 8080);
    assert_eq!(v["virtual_host"]["name"], "shop.example.com");
    assert_eq!(v["virtual_host"]["matched_by"], "exact");
    assert_eq!(
        reasons(&v),
        [r#"uri prefix "/api" does not match "/cart/1""#, "MATCH"]
    );
    assert_eq!(v["routes"][1]["matched"], true);
    let chosen = &v["chosen"];
    assert_eq!(chosen["resource"], "VirtualService web/shop");
    assert_eq!(chosen["rule"], "spec.http[1] (canary)");
    assert_eq!(chosen["match_index"], 0);
    assert!(chosen["location"]
        .as_str()
        .unwrap()
        .ends_with("config.yaml#5"));
    let o = &v["outcome"];
    assert_eq!(o["kind"], "forward");
    let d = &o["destinations"][0];
    assert_eq!(d["cluster"], "outbound|80|v2|a.svc");
    assert_eq!(d["percent"], 100.0);
    assert_eq!(d["exists"], true);
    assert_eq!(d["lb"], "ROUND_ROBIN");
    assert_eq!(d["endpoints"][0]["address"], s.a2.addr.to_string());
    assert_eq!(d["endpoints"][0]["health"], "healthy");
    assert_eq!(d["endpoints"].as_array().unwrap().len(), 1);
    let p = &o["policy"];
    assert_eq!(p["timeout_ms"], 3000);
    assert_eq!(p["retries"]["attempts"], 4);
    assert_eq!(
        p["retries"]["retry_on"],
        serde_json::json!(["5xx", "connect-failure"])
    );
    assert_eq!(p["retries"]["per_try_timeout_ms"], 1000);
    assert_eq!(p["cors"], false);
    assert_eq!(p["fault"], Value::Null);
    // The explainer agrees with a real request.
    let real = Client::http1(s.gw.addr())
        .send(
            Client::http1(s.gw.addr())
                .request("shop.example.com:8080", "/cart/1")
                .header("x-canary", "yes")
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(real.upstream(), "a2");
}

#[tokio::test]
async fn explains_misses_with_the_first_failing_condition() {
    let s = setup().await;
    let a = &s.admin;

    // Header absent, then the other rules fail on their paths: vhost found, no route, 404 NR.
    let v = explain(a, "url=http://shop.example.com:8080/cart/1").await;
    let r = reasons(&v);
    assert_eq!(r[1], "header x-canary: absent");
    assert_eq!(r[2], r#"uri exact "/search" does not match "/cart/1""#);
    assert_eq!(r.len(), 7, "every route tried");
    assert_eq!(v["chosen"], Value::Null);
    assert_eq!(v["outcome"]["kind"], "no_route");
    assert_eq!(v["outcome"]["status"], 404);
    assert_eq!(v["outcome"]["flag"], "NR");
    assert_eq!(
        v["outcome"]["reason"],
        "none of the 7 route(s) of virtual host shop.example.com matches"
    );

    // Header with another value.
    let v = explain(
        a,
        "url=http://shop.example.com:8080/cart/1&header=x-canary:%20no",
    )
    .await;
    assert_eq!(
        reasons(&v)[1],
        r#"header x-canary exact "yes" does not match "no""#
    );

    // Method.
    let v = explain(a, "method=GET&url=http://shop.example.com:8080/api/orders").await;
    assert_eq!(
        reasons(&v)[0],
        r#"method exact "POST" does not match "GET""#
    );
    let v = explain(a, "method=POST&url=http://shop.example.com:8080/api/orders").await;
    assert_eq!(v["routes"][0]["matched"], true);
    assert_eq!(v["chosen"]["rule"], "spec.http[0] (api)");

    // Query.
    let v = explain(a, "url=http://shop.example.com:8080/search?q=2").await;
    assert_eq!(reasons(&v)[2], r#"query q exact "1" does not match "2""#);
    let v = explain(a, "url=http://shop.example.com:8080/search").await;
    assert_eq!(reasons(&v)[2], "query q: absent");

    // No virtual host.
    let v = explain(a, "url=http://other.org:8080/cart").await;
    assert_eq!(v["listener"], 8080);
    assert_eq!(v["virtual_host"], Value::Null);
    assert_eq!(v["routes"], serde_json::json!([]));
    assert_eq!(v["outcome"]["kind"], "no_route");
    assert_eq!(
        v["outcome"]["reason"],
        r#"no virtual host matches "other.org:8080""#
    );

    // No listener on that port.
    let v = explain(a, "url=http://shop.example.com:9999/cart").await;
    assert_eq!(v["listener"], Value::Null);
    assert_eq!(v["listener_ports"], serde_json::json!([8080]));
    assert_eq!(v["outcome"]["kind"], "no_listener");
    assert_eq!(v["outcome"]["port"], 9999);

    // Rejected before routing: %00 in the path.
    let v = explain(a, "url=http://shop.example.com:8080/a%2500b").await;
    assert_eq!(v["request"]["path"], "/a%00b");
    assert_eq!(v["outcome"]["kind"], "rejected");
    assert_eq!(v["outcome"]["status"], 400);
    assert_eq!(v["virtual_host"], Value::Null);
}

#[tokio::test]
async fn explains_actions_redirect_direct_split_and_unknown_subset() {
    let s = setup().await;
    let a = &s.admin;

    // Wildcard virtual host, direct response; no port in the URL: the only listener is used.
    let v = explain(a, "url=http://x.wild.example.com/w").await;
    assert_eq!(v["listener"], 8080);
    assert_eq!(v["virtual_host"]["name"], "*.wild.example.com");
    assert_eq!(v["virtual_host"]["matched_by"], "wildcard");
    assert_eq!(v["outcome"]["kind"], "direct_response");
    assert_eq!(v["outcome"]["status"], 204);

    // Direct response with a body; a bare path with host=.
    let v = explain(a, "url=/search?q=1&host=shop.example.com").await;
    assert_eq!(v["request"]["authority"], "shop.example.com");
    assert_eq!(v["outcome"]["kind"], "direct_response");
    assert_eq!(v["outcome"]["status"], 200);
    assert_eq!(v["outcome"]["body_bytes"], 5);

    // Redirect: Location as Envoy builds it (path replaced, port and query kept). Paths are
    // normalised first.
    let v = explain(a, "url=http://shop.example.com:8080/x/../old/page%3Fx%3D1").await;
    assert_eq!(v["request"]["normalized_path"], "/old/page");
    assert_eq!(v["outcome"]["kind"], "redirect");
    assert_eq!(v["outcome"]["status"], 301);
    assert_eq!(
        v["outcome"]["location"],
        "http://shop.example.com:8080/new?x=1"
    );
    let real = Client::http1(s.gw.addr())
        .get("shop.example.com:8080", "/x/../old/page?x=1")
        .await;
    assert_eq!(
        real.header("location"),
        Some("http://shop.example.com:8080/new?x=1")
    );

    // Weighted split.
    let v = explain(a, "url=http://shop.example.com:8080/split").await;
    let d = &v["outcome"]["destinations"];
    assert_eq!(d[0]["cluster"], "outbound|80|v1|a.svc");
    assert_eq!(d[0]["weight"], 80);
    assert_eq!(d[0]["percent"], 80.0);
    assert_eq!(d[0]["endpoints"][0]["address"], s.a1.addr.to_string());
    assert_eq!(d[1]["cluster"], "outbound|80||b.svc");
    assert_eq!(d[1]["weight"], 20);
    assert_eq!(d[1]["lb"], "LEAST_REQUEST");
    assert_eq!(d[1]["endpoints"][0]["address"], s.b.addr.to_string());
    assert_eq!(d[1]["endpoints"][0]["health"], "healthy");

    // Unknown subset: no cluster, 503 NC.
    let v = explain(a, "url=http://shop.example.com:8080/nc").await;
    let d = &v["outcome"]["destinations"][0];
    assert_eq!(d["cluster"], "outbound|80|nope|a.svc");
    assert_eq!(d["exists"], false);
    assert_eq!(
        d["note"],
        "no such cluster (unknown host, subset or port): 503 NC"
    );
    assert_eq!(
        Client::http1(s.gw.addr())
            .get("shop.example.com", "/nc")
            .await
            .status,
        503
    );
}

#[tokio::test]
async fn explain_text_and_errors() {
    let s = setup().await;
    let r = s
        .admin
        .get(
            "admin",
            "/explain?method=GET&url=http://shop.example.com:8080/cart/1&header=x-canary:yes",
        )
        .await;
    assert_eq!(r.status, 200);
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines[0], "request: GET http://shop.example.com:8080/cart/1");
    assert!(lines.contains(&"  header x-canary: yes"), "{}", r.body);
    assert!(lines.contains(&"listener: Gateway port 8080"), "{}", r.body);
    assert!(
        lines.contains(&"virtual host: shop.example.com (exact host)"),
        "{}",
        r.body
    );
    assert!(
        lines.contains(&r#"  0. VirtualService web/shop spec.http[0] (api) match[0]: no: uri prefix "/api" does not match "/cart/1""#),
        "{}",
        r.body
    );
    assert!(
        lines.contains(&"  1. VirtualService web/shop spec.http[1] (canary) match[0]: MATCH"),
        "{}",
        r.body
    );
    assert!(lines.contains(&"result: forward"), "{}", r.body);
    assert!(
        lines.contains(&format!("    endpoint {} weight 1 healthy", s.a2.addr).as_str()),
        "{}",
        r.body
    );

    let r = s.admin.get("admin", "/explain").await;
    assert_eq!(r.status, 400);
    let r = s.admin.get("admin", "/explain?url=ftp://x/").await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("use http or https"), "{}", r.body);
    // An https URL defaults to Gateway port 443, which this gateway does not serve.
    let r = s.admin.get("admin", "/explain?url=https://x/").await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("listener: none for Gateway port 443"),
        "{}",
        r.body
    );
    let r = s.admin.get("admin", "/explain?url=/&header=nocolon").await;
    assert_eq!(r.status, 400);
}
