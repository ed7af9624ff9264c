//! The operations ports end to end: readiness for load balancers, Prometheus stats, and the admin
//! API (config dump, clusters, health-check switch, reload), none of it on a Gateway port.

use crate::support;

use http_body_util::Full;
use meshgate::OpsPort;
use support::{gateway_yaml, static_service, Client, TestGateway, Upstream};

fn config(up: &Upstream) -> String {
    gateway_yaml(&["*"])
        + &static_service("a.svc", &[(up, &[])])
        + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - name: api\n    match: [{uri: {prefix: /api}}]\n    route: [{destination: {host: a.svc}}]\n"
}

async fn post(c: &Client, path: &str) -> support::Reply {
    c.send(
        c.request("admin", path)
            .method("POST")
            .body(Full::new(Default::default()))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn readiness_follows_the_health_check_switch() {
    let up = Upstream::start("a").await;
    let gw = TestGateway::start(&config(&up)).await.with_ops().await;
    let health = Client::http1(gw.ops(OpsPort::Health));
    let admin = Client::http1(gw.ops(OpsPort::Admin));
    assert_eq!(health.get("h", "/healthz/ready").await.status, 200);
    let r = admin.get("admin", "/ready").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "LIVE\n"));

    assert_eq!(post(&admin, "/healthcheck/fail").await.status, 200);
    assert_eq!(health.get("h", "/healthz/ready").await.status, 503);
    let r = admin.get("admin", "/ready").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (503, "FAILED\n"));
    // Traffic still flows: only the load balancer's view changes.
    assert_eq!(
        Client::http1(gw.addr()).get("x", "/api").await.upstream(),
        "a"
    );

    assert_eq!(post(&admin, "/healthcheck/ok").await.status, 200);
    assert_eq!(health.get("h", "/healthz/ready").await.status, 200);
    assert_eq!(health.get("h", "/other").await.status, 404);

    gw.gw.health().start_draining();
    assert_eq!(health.get("h", "/healthz/ready").await.status, 503);
    assert_eq!(admin.get("admin", "/ready").await.body, "DRAINING\n");
}

#[tokio::test]
async fn stats_port_serves_prometheus_text() {
    let up = Upstream::start("a").await;
    let gw = TestGateway::start(&config(&up)).await.with_ops().await;
    let stats = Client::http1(gw.ops(OpsPort::Stats));
    let r = stats.get("s", "/stats/prometheus").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        r.headers
    );
    assert!(r.body.contains("meshgate_config_generation"), "{}", r.body);
    assert!(
        r.body
            .contains("meshgate_config_resources_skipped{kind=\"VirtualService\"}"),
        "{}",
        r.body
    );
    assert_eq!(
        stats.get("s", "/config_dump").await.status,
        404,
        "admin only on the admin port"
    );
}

#[tokio::test]
async fn admin_dumps_config_and_clusters_and_reloads() {
    let up = Upstream::start("a").await;
    let gw = TestGateway::start(&config(&up)).await.with_ops().await;
    let admin = Client::http1(gw.ops(OpsPort::Admin));
    let dump = admin.get("admin", "/config_dump").await;
    assert_eq!(dump.status, 200);
    let v: serde_json::Value = serde_json::from_str(&dump.body).expect("JSON");
    assert_eq!(v["status"]["generation"], 1);
    assert_eq!(v["listeners"][0]["gateway_port"], 8080);
    let route = &v["listeners"][0]["virtual_hosts"][0]["routes"][0];
    assert_eq!(route["name"], "default/vs/api");
    assert_eq!(route["source"]["resource"], "VirtualService default/vs");
    assert_eq!(route["source"]["rule"], "spec.http[0] (api)");
    assert!(route["source"]["location"]
        .as_str()
        .unwrap()
        .ends_with("config.yaml#3"));
    assert_eq!(
        route["action"]["route"]["destinations"][0]["cluster"],
        "outbound|80||a.svc"
    );
    let ep = &v["clusters"][0]["endpoints"][0];
    assert_eq!(ep["address"], up.addr.to_string());
    assert_eq!(ep["health"], "healthy");

    let clusters = admin.get("admin", "/clusters").await.body;
    assert!(
        clusters.contains(&format!(
            "outbound|80||a.svc::{}::health_flags::healthy",
            up.addr
        )),
        "{clusters}"
    );

    assert_eq!(admin.get("admin", "/reload").await.status, 405);
    std::fs::write(gw.config_file(), config(&up).replace("/api", "/v2")).unwrap();
    let r = post(&admin, "/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["result"], "applied");
    assert_eq!(v["status"]["generation"], 2);
    assert_eq!(
        Client::http1(gw.addr()).get("x", "/v2").await.upstream(),
        "a"
    );

    std::fs::write(gw.config_file(), "spec: [unclosed\n").unwrap();
    let r = post(&admin, "/reload").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("YAML syntax error"), "{}", r.body);
    assert_eq!(admin.get("admin", "/nope").await.status, 404);
}

#[tokio::test]
async fn admin_endpoints_are_not_on_gateway_ports() {
    let up = Upstream::start("a").await;
    let gw = TestGateway::start(&config(&up)).await.with_ops().await;
    let c = Client::http1(gw.addr());
    for path in [
        "/config_dump",
        "/clusters",
        "/stats/prometheus",
        "/ready",
        "/healthz/ready",
    ] {
        let r = c.get("x", path).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.body, "", "{path}: Envoy's empty NR reply");
    }
    let r = post(&c, "/healthcheck/fail").await;
    assert_eq!(r.status, 404);
    assert!(gw.gw.health().is_ready());
}
