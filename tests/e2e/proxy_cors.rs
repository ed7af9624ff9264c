//! `corsPolicy` end to end, as Envoy's CORS filter applies it for Istio: preflights answered at the
//! gateway, allowed origins echoed on responses (upstream and gateway-made), unmatched preflights
//! forwarded or ignored, and route matching done on the preflight request itself.

use crate::support;

use bytes::Bytes;
use http_body_util::Full;
use support::{closed_addr, gateway_yaml, service_at, static_service, virtual_service};
use support::{Client, Reply, TestGateway, Upstream};

const ORIGIN: &str = "https://app.example";

/// `/api` → app.svc with a full policy; `/strict` → same with `unmatchedPreflights: IGNORE`;
/// `/re` → regex and prefix origins; `/old` → deprecated `allowOrigin`; `/down` → a closed port;
/// `/get-only` matches GET only; everything else → app.svc without CORS.
async fn start(app: &Upstream) -> TestGateway {
    let mut yaml = gateway_yaml(&["*"]);
    yaml.push_str(&static_service("app.svc", &[(app, &[])]));
    yaml.push_str(&service_at("down.svc", "HTTP", &[closed_addr()]));
    let policy = "allowOrigins: [{exact: \"https://app.example\"}], allowMethods: [GET, POST], \
                  allowHeaders: [content-type, x-token], exposeHeaders: [x-trace, x-count], \
                  maxAge: 24h";
    yaml.push_str(&virtual_service(&format!(
        "  - match: [{{uri: {{prefix: /api}}}}]\n    route: [{{destination: {{host: app.svc}}}}]\n    headers: {{response: {{set: {{access-control-allow-origin: upstream-said}}}}}}\n    corsPolicy: {{{policy}}}\n\
         \x20 - match: [{{uri: {{prefix: /strict}}}}]\n    route: [{{destination: {{host: app.svc}}}}]\n    corsPolicy: {{{policy}, unmatchedPreflights: IGNORE}}\n\
         \x20 - match: [{{uri: {{prefix: /creds}}}}]\n    route: [{{destination: {{host: app.svc}}}}]\n    corsPolicy: {{allowOrigins: [{{exact: \"https://app.example\"}}], allowCredentials: true, allowMethods: [\"*\"]}}\n\
         \x20 - match: [{{uri: {{prefix: /re}}}}]\n    route: [{{destination: {{host: app.svc}}}}]\n    corsPolicy: {{allowOrigins: [{{regex: \"https://[a-z]+\\\\.example\\\\.org\"}}, {{prefix: \"http://localhost:\"}}]}}\n\
         \x20 - match: [{{uri: {{prefix: /old}}}}]\n    route: [{{destination: {{host: app.svc}}}}]\n    corsPolicy: {{allowOrigin: [\"https://legacy.example\"]}}\n\
         \x20 - match: [{{uri: {{prefix: /down}}}}]\n    route: [{{destination: {{host: down.svc}}}}]\n    retries: {{attempts: 0}}\n    corsPolicy: {{allowOrigins: [{{exact: \"https://app.example\"}}]}}\n\
         \x20 - match: [{{uri: {{prefix: /get-only}}, method: {{exact: GET}}}}]\n    route: [{{destination: {{host: app.svc}}}}]\n    corsPolicy: {{allowOrigins: [{{exact: \"https://app.example\"}}]}}\n\
         \x20 - route: [{{destination: {{host: app.svc}}}}]\n"
    )));
    TestGateway::start(&yaml).await
}

async fn send(gw: &TestGateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let c = Client::http1(gw.addr());
    let mut b = c.request("x", path).method(method);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    c.send(b.body(Full::new(Bytes::new())).unwrap()).await
}

async fn preflight(gw: &TestGateway, path: &str, origin: &str) -> Reply {
    send(
        gw,
        "OPTIONS",
        path,
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
    )
    .await
}

#[tokio::test]
async fn preflight_from_allowed_origin_is_answered_at_the_gateway() {
    let app = Upstream::start("app").await;
    let gw = start(&app).await;
    let r = preflight(&gw, "/api/items", ORIGIN).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "");
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type,x-token")
    );
    assert_eq!(r.header("access-control-max-age"), Some("86400"));
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-trace,x-count")
    );
    assert_eq!(r.header("access-control-allow-credentials"), None);
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(r.header("server"), Some("istio-envoy"));
    assert_eq!(app.hits(), 0, "a preflight must not reach the upstream");
}

#[tokio::test]
async fn preflight_from_other_origin_is_forwarded_by_default() {
    let app = Upstream::start("app").await;
    let gw = start(&app).await;
    let r = preflight(&gw, "/api/items", "https://evil.example").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream(), "app");
    assert_eq!(r.field("method"), Some("OPTIONS"));
    assert_eq!(r.header("access-control-allow-methods"), None);
    // The route's own response header is all there is: no origin is echoed.
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("upstream-said")
    );
}

#[tokio::test]
async fn preflight_from_other_origin_with_ignore_is_answered_without_allow_origin() {
    let app = Upstream::start("app").await;
    let gw = start(&app).await;
    let r = preflight(&gw, "/strict", "https://evil.example").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "");
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("access-control-expose-headers"), None);
    // Envoy still sends the method/header/max-age lists: the browser fails on the missing origin.
    assert_eq!(r.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(r.header("access-control-max-age"), Some("86400"));
    assert_eq!(app.hits(), 0);
    // An allowed origin still gets the full answer.
    let ok = preflight(&gw, "/strict", ORIGIN).await;
    assert_eq!(ok.header("access-control-allow-origin"), Some(ORIGIN));
}

#[tokio::test]
async fn simple_request_with_allowed_origin_gets_origin_and_expose_headers() {
    let app = Upstream::start("app").await;
    let gw = start(&app).await;
    let r = send(&gw, "GET", "/api/items", &[("origin", ORIGIN)]).await;
    assert_eq!(r.upstream(), "app");
    // Set over the route's own response header, as Envoy's filter does on the way out.
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-trace,x-count")
    );
    // Preflight-only headers are not on simple responses.
    assert_eq!(r.header("access-control-allow-methods"), None);
    assert_eq!(r.header("access-control-max-age"), None);
    assert!(r.headers.get("vary").is_none(), "Envoy adds no vary");
}

#[tokio::test]
async fn simple_request_with_other_or_no_origin_gets_no_cors_headers() {
    let app = Upstream::start("app").await;
    let gw = start(&app).await;
    for headers in [&[("origin", "https://evil.example")][..], &[]] {
        let r = send(&gw, "POST", "/strict", headers).await;
        assert_eq!(r.upstream(), "app");
        assert_eq!(r.header("access-control-allow-origin"), None);
        assert_eq!(r.header("access-control-expose-headers"), None);
    }
}

#[tokio::test]
async fn allow_credentials_is_sent_on_preflight_and_response() {
    let app = Upstream::start("app").await;
    let gw = start(&app).await;
    let p = preflight(&gw, "/creds", ORIGIN).await;
    assert_eq!(p.header("access-control-allow-credentials"), Some("true"));
    // allowMethods ["*"] echoes the requested method.
    assert_eq!(p.header("access-control-allow-methods"), Some("POST"));
    let r = send(&gw, "GET", "/creds", &[("origin", ORIGIN)]).await;
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
}

#[tokio::test]
async fn regex_and_prefix_origins_match_whole_origin() {
    let app = Upstream::start("app").await;
    let gw = start(&app).await;
    for (origin, allowed) in [
        ("https://shop.example.org", true),
        ("https://shop.example.org.evil", false),
        ("https://SHOP.example.org", false),
        ("http://localhost:3000", true),
        ("http://localhost.evil", false),
    ] {
        let r = send(&gw, "GET", "/re", &[("origin", origin)]).await;
        let got = r.header("access-control-allow-origin");
        assert_eq!(got, allowed.then_some(origin), "origin {origin}");
    }
}

#[tokio::test]
async fn deprecated_allow_origin_list_matches_exactly() {
    let app = Upstream::start("app").await;
    let gw = start(&app).await;
    let r = preflight(&gw, "/old", "https://legacy.example").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://legacy.example")
    );
    assert_eq!(app.hits(), 0);
    let r = send(
        &gw,
        "GET",
        "/old",
        &[("origin", "https://legacy.example.com")],
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn gateway_error_replies_carry_cors_headers() {
    let app = Upstream::start("app").await;
    let gw = start(&app).await;
    let r = send(&gw, "GET", "/down", &[("origin", ORIGIN)]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
}

#[tokio::test]
async fn preflight_is_routed_as_an_options_request() {
    let app = Upstream::start("app").await;
    let gw = start(&app).await;
    // The GET-only route does not match OPTIONS: the catch-all (no CORS) takes the preflight.
    let r = preflight(&gw, "/get-only", ORIGIN).await;
    assert_eq!(r.field("method"), Some("OPTIONS"));
    assert_eq!(r.header("access-control-allow-origin"), None);
    // A GET on that route is a CORS request of that route.
    let r = send(&gw, "GET", "/get-only", &[("origin", ORIGIN)]).await;
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
}
