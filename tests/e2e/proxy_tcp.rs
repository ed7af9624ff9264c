//! TLS passthrough by SNI and TCP routes, end to end: real rustls and TCP upstreams, the real
//! gateway, real clients, all on 127.0.0.1 with ephemeral ports.

use crate::support;

use std::time::Duration;

use support::l4::{read_line, tcp_service, L4Upstream};
use support::tls::{Ca, TlsClient};
use support::TestGateway;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const GATEWAY: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers:\n  - {port: {number: 9443, name: tls, protocol: TLS}, hosts: [\"*\"], tls: {mode: PASSTHROUGH}}\n  - {port: {number: 9000, name: tcp, protocol: TCP}, hosts: [\"*\"]}\n---\n";

const SUBSETS: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: echo}\nspec:\n  host: echo.svc\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n---\n";

/// A VirtualService sending TCP port 9000 to subsets v1 and v2 of `echo.svc` with these weights.
fn tcp_route(w1: u32, w2: u32) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: echo}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  tcp:\n  - match: [{{port: 9000}}]\n    route:\n    - {{destination: {{host: echo.svc, subset: v1, port: {{number: 9000}}}}, weight: {w1}}}\n    - {{destination: {{host: echo.svc, subset: v2, port: {{number: 9000}}}}, weight: {w2}}}\n---\n")
}

/// The greeting of the upstream a new TCP connection through the gateway reaches.
async fn greeting(gw: &TestGateway) -> String {
    let mut s = TcpStream::connect(gw.port(9000)).await.unwrap();
    read_line(&mut s).await
}

async fn count(gw: &TestGateway, n: usize) -> (usize, usize) {
    let mut counts = (0, 0);
    for _ in 0..n {
        match greeting(gw).await.as_str() {
            "v1" => counts.0 += 1,
            "v2" => counts.1 += 1,
            other => panic!("unexpected greeting {other:?}"),
        }
    }
    counts
}

#[tokio::test]
async fn passthrough_picks_the_upstream_by_sni_without_terminating() {
    let ca = Ca::new("test ca");
    let a_cert = ca.server(&["a.example.com"]);
    let b_cert = ca.server(&["b.example.com"]);
    let w_cert = ca.server(&["*.wild.example.com"]);
    let a = L4Upstream::tls("a", &a_cert).await;
    let b = L4Upstream::tls("b", &b_cert).await;
    let w = L4Upstream::tls("w", &w_cert).await;
    let mut yaml = GATEWAY.to_owned();
    for (host, u) in [("a.svc", &a), ("b.svc", &b), ("w.svc", &w)] {
        yaml.push_str(&tcp_service(host, &[(u, "v1")]));
    }
    yaml.push_str("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: sni}\nspec:\n  hosts: [\"*.example.com\"]\n  gateways: [gw]\n  tls:\n  - match: [{sniHosts: [a.example.com]}]\n    route: [{destination: {host: a.svc, port: {number: 9000}}}]\n  - match: [{sniHosts: [b.example.com], port: 9443}]\n    route: [{destination: {host: b.svc, port: {number: 9000}}}]\n  - match: [{sniHosts: [\"*.wild.example.com\"]}]\n    route: [{destination: {host: w.svc, port: {number: 9000}}}]\n---\n");
    let gw = TestGateway::start(&yaml).await;
    let addr = gw.port(9443);

    for (sni, cert, name) in [
        ("a.example.com", &a_cert, "a"),
        ("b.example.com", &b_cert, "b"),
        ("x.wild.example.com", &w_cert, "w"),
        ("deep.x.wild.example.com", &w_cert, "w"),
    ] {
        let (mut tls, seen, _) = TlsClient::sni(sni).connect(addr).await.unwrap();
        assert_eq!(seen, cert.der, "{sni}: the upstream's own certificate");
        assert_eq!(read_line(&mut tls).await, name, "{sni}");
        tls.write_all(b"ping\n").await.unwrap();
        assert_eq!(read_line(&mut tls).await, "ping", "{sni}: echoed through");
    }

    // No filter chain for this name, nor for a client without SNI: closed, no handshake.
    for client in [TlsClient::sni("c.example.com"), TlsClient::default()] {
        let err = client.connect(addr).await.err();
        assert!(err.is_some_and(|e| e.starts_with("handshake")), "closed");
    }
}

#[tokio::test]
async fn tcp_route_follows_weights_and_a_reload_applies_to_new_connections() {
    let v1 = L4Upstream::echo("v1").await;
    let v2 = L4Upstream::echo("v2").await;
    let base = format!(
        "{GATEWAY}{}{SUBSETS}",
        tcp_service("echo.svc", &[(&v1, "v1"), (&v2, "v2")])
    );
    let gw = TestGateway::start(&format!("{base}{}", tcp_route(100, 0)))
        .await
        .watching();
    assert_eq!(count(&gw, 20).await, (20, 0), "weights 100/0");

    // A tunnel opened before the reload keeps its upstream.
    let mut open = TcpStream::connect(gw.port(9000)).await.unwrap();
    assert_eq!(read_line(&mut open).await, "v1");

    std::fs::write(gw.config_file(), format!("{base}{}", tcp_route(0, 100))).unwrap();
    gw.wait_generation(2).await;
    assert_eq!(
        count(&gw, 20).await,
        (0, 20),
        "weights 0/100 after the reload"
    );
    open.write_all(b"still\n").await.unwrap();
    assert_eq!(read_line(&mut open).await, "still", "old tunnel untouched");

    std::fs::write(gw.config_file(), format!("{base}{}", tcp_route(50, 50))).unwrap();
    gw.wait_generation(3).await;
    let (a, b) = count(&gw, 200).await;
    assert!(a > 60 && b > 60, "50/50 over 200 connections: {a}/{b}");
}

#[tokio::test]
async fn tcp_connect_failure_and_no_route_close_the_connection() {
    let closed = support::closed_addr();
    let mut yaml = GATEWAY.to_owned();
    yaml.push_str(&format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: gone}}\nspec:\n  hosts: [gone.svc]\n  ports: [{{number: 9000, name: tcp, protocol: TCP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {}}}}}]\n---\n",
        closed.port()
    ));
    yaml.push_str("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: gone}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  tcp: [{route: [{destination: {host: gone.svc, port: {number: 9000}}}]}]\n---\n");
    let gw = TestGateway::start(&yaml).await;
    let got = tokio::time::timeout(Duration::from_secs(10), greeting(&gw))
        .await
        .expect("closed, not hung");
    assert_eq!(got, "", "connect failure: the client sees a close");
    // The passthrough port has no tls route at all: every connection is closed.
    let err = TlsClient::sni("a.example.com")
        .connect(gw.port(9443))
        .await
        .err();
    assert!(err.is_some(), "no route: closed");
}

#[tokio::test]
async fn tcp_connections_are_counted_logged_dumped_and_drained() {
    use meshgate::telemetry::{Format, Sink};
    use meshgate::OpsPort;
    use std::sync::{Arc, Mutex};

    let v1 = L4Upstream::echo("v1").await;
    // Ports of their own: the metrics recorder is shared by this file's tests.
    let yaml = format!(
        "{}{}{SUBSETS}{}",
        GATEWAY
            .replace("9443", "9543")
            .replace("9000, name", "9100, name"),
        tcp_service("echo.svc", &[(&v1, "v1")]),
        tcp_route(100, 0).replace("port: 9000}]", "port: 9100}]"),
    );
    let buf = Arc::new(Mutex::new(Vec::new()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    let log = buf.clone();
    let gw = TestGateway::try_start_with(dir, |s| {
        s.access_log = Some((Format::Text, Sink::Memory(log)));
    })
    .await
    .expect("start")
    .with_ops()
    .await;

    let mut s = TcpStream::connect(gw.port(9100)).await.unwrap();
    assert_eq!(read_line(&mut s).await, "v1");
    s.write_all(b"ping\n").await.unwrap();
    assert_eq!(read_line(&mut s).await, "ping");
    drop(s);
    let refused = TlsClient::sni("nowhere.example")
        .connect(gw.port(9543))
        .await;
    assert!(refused.is_err(), "no route: closed");

    let lines = || -> Vec<String> {
        String::from_utf8_lossy(&buf.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert!(
        support::eventually(Duration::from_secs(10), || lines().len() >= 2).await,
        "{:?}",
        lines()
    );
    let all = lines();
    let tunnel = all
        .iter()
        .find(|l| l.contains("echo.svc"))
        .expect("tunnel line");
    let rest = tunnel.split_once("] ").unwrap().1;
    assert!(rest.starts_with("\"- - -\" 0 - - - \"-\" 5 8 "), "{rest}");
    assert!(
        rest.contains(&format!("\"{}\" outbound|9000|v1|echo.svc ", v1.addr)),
        "{rest}"
    );
    let no_route = all.iter().find(|l| l.contains(" NR ")).expect("NR line");
    assert!(no_route.contains("nowhere.example"), "{no_route}");

    let stats = support::Client::http1(gw.ops(OpsPort::Stats))
        .get("s", "/stats/prometheus")
        .await
        .body;
    for (metric, prefix, value) in [
        (
            "envoy_tcp_downstream_cx_total",
            "outbound_0.0.0.0_9100",
            "1",
        ),
        (
            "envoy_tcp_downstream_cx_rx_bytes_total",
            "outbound_0.0.0.0_9100",
            "5",
        ),
        (
            "envoy_tcp_downstream_cx_tx_bytes_total",
            "outbound_0.0.0.0_9100",
            "8",
        ),
        (
            "envoy_tcp_downstream_cx_no_route",
            "outbound_0.0.0.0_9543",
            "1",
        ),
    ] {
        let line = format!("{metric}{{tcp_prefix=\"{prefix}\"}} {value}");
        assert!(stats.lines().any(|l| l == line), "{line} in\n{stats}");
    }

    let dump = support::Client::http1(gw.ops(OpsPort::Admin))
        .get("a", "/config_dump")
        .await
        .body;
    assert!(dump.contains("\"tcp_route\""), "{dump}");
    assert!(dump.contains("outbound|9000|v1|echo.svc"), "{dump}");
    let compact: String = dump.split_whitespace().collect();
    assert!(compact.contains("\"sni_routes\":[]"), "{dump}");

    // Shutdown: new connections are refused; an open tunnel keeps working.
    let mut open = TcpStream::connect(gw.port(9100)).await.unwrap();
    assert_eq!(read_line(&mut open).await, "v1");
    gw.gw.stop_accepting().await;
    assert!(
        TcpStream::connect(gw.port(9100)).await.is_err(),
        "not accepting"
    );
    open.write_all(b"after\n").await.unwrap();
    assert_eq!(read_line(&mut open).await, "after");
}

/// A TCP route to a service whose DestinationRule originates TLS: the client speaks plain TCP,
/// meshgate's connection to the upstream is TLS, verified against the rule's CA (the same
/// connect the HTTP pools use); a wrong CA closes the client's connection.
#[tokio::test]
async fn tcp_routes_originate_tls_when_the_destination_rule_asks() {
    let ca = Ca::new("upstream ca");
    let up = L4Upstream::tls("secure", &ca.server(&["echo.svc"])).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let wrong_file = dir.path().join("wrong.crt");
    std::fs::write(&wrong_file, Ca::new("another ca").pem()).unwrap();
    let route = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: echo}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  tcp:\n  - route: [{destination: {host: echo.svc, port: {number: 9000}}}]\n---\n";
    for (ca, expected) in [(&ca_file, "secure"), (&wrong_file, "")] {
        let mut yaml = GATEWAY.to_owned();
        yaml.push_str(&tcp_service("echo.svc", &[(&up, "v1")]));
        yaml.push_str(route);
        yaml.push_str(&format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: tls}}\nspec:\n  host: echo.svc\n  trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: {}}}}}\n---\n", ca.display()));
        let gw = TestGateway::start(&yaml).await;
        let mut s = TcpStream::connect(gw.port(9000)).await.unwrap();
        let greeting = tokio::time::timeout(Duration::from_secs(10), read_line(&mut s)).await;
        assert_eq!(greeting.as_deref(), Ok(expected));
        if !expected.is_empty() {
            s.write_all(b"ping\n").await.unwrap();
            assert_eq!(read_line(&mut s).await, "ping");
        }
    }
}
