//! What the finish phase records after real traffic: Istio's metrics (names, labels, values,
//! bounded cardinality), Envoy's cluster counters, access log lines in both formats; and the drain
//! (connection: close, GOAWAY, in-flight requests finish before shutdown returns).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use meshgate::telemetry::{Format, Sink};
use meshgate::OpsPort;
use support::{closed_addr, eventually, gateway_yaml, service_at, Client, TestGateway, Upstream};

/// Hosts `<tag>-ok.svc` (a live upstream) and `<tag>-down.svc` (a closed port); routes `/ok` and
/// `/slow` (the upstream answers `/slow/<ms>` after that long), `/down`; anything else is 404 NR.
fn config(tag: &str, up: &Upstream) -> String {
    gateway_yaml(&["*"])
        + &service_at(&format!("{tag}-ok.svc"), "HTTP", &[up.addr])
        + &service_at(&format!("{tag}-down.svc"), "HTTP", &[closed_addr()])
        + &format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [\"{tag}.example.com\"]\n  gateways: [gw]\n  http:\n  - name: ok\n    match: [{{uri: {{prefix: /ok}}}}]\n    route: [{{destination: {{host: {tag}-ok.svc}}}}]\n  - name: slow\n    match: [{{uri: {{prefix: /slow}}}}]\n    route: [{{destination: {{host: {tag}-ok.svc}}}}]\n  - name: down\n    match: [{{uri: {{prefix: /down}}}}]\n    retries: {{attempts: 0}}\n    route: [{{destination: {{host: {tag}-down.svc}}}}]\n")
}

async fn start(yaml: &str, log: Option<(Format, Arc<Mutex<Vec<u8>>>)>) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    TestGateway::try_start_with(dir, |s| {
        s.access_log = log.map(|(f, buf)| (f, Sink::Memory(buf)));
    })
    .await
    .expect("start")
    .with_ops()
    .await
}

/// The value of the one series of `metric` whose labels contain every `label="value"` given.
fn series(text: &str, metric: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

async fn scrape(gw: &TestGateway) -> String {
    Client::http1(gw.ops(OpsPort::Stats))
        .get("s", "/stats/prometheus")
        .await
        .body
}

#[tokio::test]
async fn istio_metrics_after_real_traffic() {
    let up = Upstream::start("a").await;
    let gw = start(&config("m1", &up), None).await;
    let c = Client::http1(gw.addr());
    let host = "m1.example.com";
    for _ in 0..3 {
        assert_eq!(c.get(host, "/ok").await.status, 200);
    }
    assert_eq!(c.get(host, "/nope").await.status, 404);
    assert_eq!(c.get(host, "/down").await.status, 503);
    // The finish phase runs when each response body ends; the client has read them all.
    let stats = scrape(&gw).await;
    let ok = [
        ("reporter", "source"),
        ("source_workload", "istio-ingressgateway"),
        ("source_workload_namespace", "istio-system"),
        ("destination_service", "m1-ok.svc"),
        ("destination_service_name", "m1-ok.svc"),
        ("destination_version", "unknown"),
        ("request_protocol", "http"),
        ("response_code", "200"),
        ("response_flags", "-"),
        ("connection_security_policy", "unknown"),
        ("grpc_response_status", ""),
    ];
    assert_eq!(
        series(&stats, "istio_requests_total", &ok),
        vec![3.0],
        "{stats}"
    );
    let uf = [
        ("destination_service", "m1-down.svc"),
        ("response_code", "503"),
        ("response_flags", "UF"),
    ];
    assert_eq!(series(&stats, "istio_requests_total", &uf), vec![1.0]);
    let nr = [("response_code", "404"), ("response_flags", "NR")];
    assert!(series(&stats, "istio_requests_total", &nr)
        .first()
        .is_some_and(|v| *v >= 1.0));
    // Histograms with Envoy's buckets.
    assert!(stats.contains("istio_request_duration_milliseconds_bucket{"));
    assert_eq!(
        series(
            &stats,
            "istio_request_duration_milliseconds_count",
            &[("destination_service", "m1-ok.svc")]
        ),
        vec![3.0]
    );
    let bucket = series(
        &stats,
        "istio_response_bytes_bucket",
        &[("destination_service", "m1-ok.svc"), ("le", "3600000")],
    );
    assert_eq!(bucket, vec![3.0]);
    // Envoy's cluster gauges (state at scrape time) and connection manager counters.
    assert_eq!(
        series(
            &stats,
            "envoy_cluster_membership_healthy",
            &[("cluster_name", "outbound|80||m1-ok.svc")]
        ),
        vec![1.0]
    );
    assert!(series(
        &stats,
        "envoy_http_downstream_cx_total",
        &[("http_conn_manager_prefix", "outbound_0.0.0.0_8080")]
    )
    .first()
    .is_some_and(|v| *v >= 1.0));
    // Envoy's cluster counters.
    assert_eq!(
        series(
            &stats,
            "envoy_cluster_upstream_rq_total",
            &[("cluster_name", "outbound|80||m1-ok.svc")]
        ),
        vec![3.0]
    );
}

#[tokio::test]
async fn unknown_hosts_and_random_paths_create_no_series() {
    let up = Upstream::start("a").await;
    let gw = start(&config("m2", &up), None).await;
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("first-unknown.example", "/x").await.status, 404);
    // Series of requests that reached no cluster (other tests in this process add their own
    // destinations' series concurrently, so only these are counted).
    let count = |s: &str| {
        s.lines()
            .filter(|l| l.starts_with("istio_requests_total{"))
            .filter(|l| l.contains("destination_service=\"unknown\""))
            .count()
    };
    let before = count(&scrape(&gw).await);
    for i in 0..20 {
        let r = c
            .get(&format!("random-{i}.example"), &format!("/path/{i}?q={i}"))
            .await;
        assert_eq!(r.status, 404);
    }
    assert_eq!(
        c.get("m2.example.com", &format!("/unknown/{}", 7))
            .await
            .status,
        404
    );
    let after = scrape(&gw).await;
    assert_eq!(count(&after), before, "no new series from request strings");
    assert!(
        !after.contains("random-"),
        "request strings never become labels"
    );
}

fn lines(buf: &Arc<Mutex<Vec<u8>>>) -> Vec<String> {
    String::from_utf8_lossy(&buf.lock().unwrap())
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn access_log_text_is_istios_envoy_format() {
    let up = Upstream::start("a").await;
    let buf = Arc::new(Mutex::new(Vec::new()));
    let gw = start(&config("l1", &up), Some((Format::Text, buf.clone()))).await;
    let c = Client::http1(gw.addr());
    let r = c
        .send(
            c.request("l1.example.com", "/ok/x?q=1")
                .header("user-agent", "test-agent/1")
                .header("x-request-id", "rid-1")
                .body(Full::new(bytes::Bytes::from_static(b"hello")))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(c.get("l1.example.com", "/down").await.status, 503);
    assert!(
        eventually(Duration::from_secs(10), || lines(&buf).len() >= 2).await,
        "{:?}",
        lines(&buf)
    );
    let all = lines(&buf);
    let ok = &all[0];
    assert!(ok.starts_with('['), "{ok}");
    let rest = ok.split_once("] ").unwrap().1;
    let expected_start = "\"GET /ok/x?q=1 HTTP/1.1\" 200 - via_upstream - \"-\" 5 ";
    assert!(rest.starts_with(expected_start), "{rest}");
    assert!(
        rest.contains(&format!(
            "\"-\" \"test-agent/1\" \"rid-1\" \"l1.example.com\" \"{}\" outbound|80||l1-ok.svc - ",
            up.addr
        )),
        "{rest}"
    );
    assert!(rest.ends_with(" - default/vs/ok"), "{rest}");
    let down = &all[1];
    assert!(
        down.contains("\"GET /down HTTP/1.1\" 503 UF upstream_reset_before_response_started{connection_failure} "),
        "{down}"
    );
    assert!(down.contains("outbound|80||l1-down.svc"), "{down}");
}

#[tokio::test]
async fn access_log_json_has_istios_keys() {
    let up = Upstream::start("a").await;
    let buf = Arc::new(Mutex::new(Vec::new()));
    let gw = start(&config("l2", &up), Some((Format::Json, buf.clone()))).await;
    let c = Client::http1(gw.addr());
    assert_eq!(c.get("l2.example.com", "/nope").await.status, 404);
    assert!(eventually(Duration::from_secs(10), || !lines(&buf).is_empty()).await);
    let v: serde_json::Value = serde_json::from_str(&lines(&buf)[0]).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/nope");
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["response_code"], 404);
    assert_eq!(v["response_flags"], "NR");
    assert_eq!(v["response_code_details"], "route_not_found");
    assert_eq!(v["authority"], "l2.example.com");
    assert_eq!(v["upstream_cluster"], serde_json::Value::Null);
    assert_eq!(v["route_name"], serde_json::Value::Null);
    assert!(v["start_time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["downstream_local_address"], gw.addr().to_string());
}

#[tokio::test]
async fn draining_closes_connections_and_shutdown_waits_for_in_flight_requests() {
    let up = Upstream::start("a").await;
    let gw = start(&config("d1", &up), None).await;
    let addr = gw.addr();
    let c = Client::http1(addr);

    // An h2c connection open before draining gets a GOAWAY: its driver ends.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let h2_conn = tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("http://d1.example.com/ok")
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(h2.send_request(req).await.unwrap().status(), 200);

    // A slow request in flight when draining and shutdown start.
    let slow = tokio::spawn({
        let c = Client::http1(addr);
        async move { c.get("d1.example.com", "/slow/400").await }
    });
    assert!(eventually(Duration::from_secs(10), || up.in_flight() >= 1).await);

    gw.gw.start_draining();
    let health = Client::http1(gw.ops(OpsPort::Health));
    assert_eq!(health.get("h", "/healthz/ready").await.status, 503);
    let r = c.get("d1.example.com", "/ok").await;
    assert_eq!(r.status, 200, "still serving while draining");
    assert_eq!(r.header("connection"), Some("close"));
    tokio::time::timeout(Duration::from_secs(10), h2_conn)
        .await
        .expect("the h2 connection ends after GOAWAY")
        .unwrap()
        .unwrap();

    tokio::time::timeout(Duration::from_secs(10), gw.gw.shutdown())
        .await
        .expect("shutdown returns once connections close");
    assert_eq!(gw.gw.open_connections(), 0);
    let r = slow.await.unwrap();
    assert_eq!(
        r.status, 200,
        "the in-flight request finished before shutdown returned"
    );
    assert_eq!(r.upstream(), "a");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
