//! TLS-terminated TCP: `protocol: TLS` servers with `tls.mode` SIMPLE / MUTUAL /
//! OPTIONAL_MUTUAL terminate TLS at the gateway (certificate chosen by SNI among the port's
//! servers) and tunnel the decrypted stream by the VirtualService's `tcp` routes, end to end over
//! 127.0.0.1 with ephemeral ports and rcgen certificates; such servers validate without the
//! "not supported" warning, and share a port with terminating HTTPS servers.

use crate::support;

use std::path::Path;
use std::time::Duration;

use meshgate::compile::{compile, Options};
use meshgate::config::load_str;
use meshgate::route::L4Table;
use support::l4::{read_line, tcp_service, L4Upstream};
use support::tls::{gateway, Ca, Issued, TlsClient};
use support::TestGateway;
use tokio::io::AsyncWriteExt;

/// A `protocol: TLS` server entry (flow style) on `port` for `hosts` with this `tls` block.
fn tls_server(port: u16, port_name: &str, hosts: &[&str], tls: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    format!(
        "{{port: {{number: {port}, name: {port_name}, protocol: TLS}}, hosts: [{}], tls: {tls}}}",
        hosts.join(", ")
    )
}

/// A SIMPLE `tls` block serving `cert` from files written to `dir` as `<stem>.crt/.key`.
fn simple(dir: &Path, cert: &Issued, stem: &str) -> String {
    let (c, k) = cert.write(dir, stem);
    format!(
        "{{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}",
        c.display(),
        k.display()
    )
}

/// A VirtualService `name` for `hosts` on gateway `gw` with one `tcp` route to `host:9000`.
fn tcp_vs(name: &str, hosts: &str, host: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{hosts}]\n  gateways: [gw]\n  tcp:\n  - route: [{{destination: {{host: {host}, port: {{number: 9000}}}}}}]\n---\n")
}

/// A TLS connection through the gateway: the certificate it presented, the upstream's greeting,
/// and whether a line written is echoed back. `None`: refused (handshake failed, or the gateway
/// closed the connection before any byte, as after a rejected client certificate in TLS 1.3).
async fn tunnel(client: &TlsClient, addr: std::net::SocketAddr) -> Option<(Vec<u8>, String)> {
    let (mut tls, cert, _) = client.connect(addr).await.ok()?;
    let greeting = tokio::time::timeout(Duration::from_secs(10), read_line(&mut tls))
        .await
        .expect("greeting or close, not a hang");
    if greeting.is_empty() {
        return None;
    }
    tls.write_all(b"ping\n").await.unwrap();
    assert_eq!(
        read_line(&mut tls).await,
        "ping",
        "echoed through the tunnel"
    );
    Some((cert, greeting))
}

#[tokio::test]
async fn simple_tls_server_tunnels_to_a_tcp_upstream_with_the_certificate_chosen_by_sni() {
    use meshgate::telemetry::{Format, Sink};
    use meshgate::OpsPort;
    use std::sync::{Arc, Mutex};

    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, b_cert) = (ca.server(&["a.example.com"]), ca.server(&["b.example.com"]));
    let (a, b) = (L4Upstream::echo("a").await, L4Upstream::echo("b").await);
    // A port of its own: the metrics recorder is shared by every test of this binary.
    let mut yaml = gateway(
        "gw",
        &[
            tls_server(
                9643,
                "tls-a",
                &["a.example.com"],
                &simple(dir.path(), &a_cert, "a"),
            ),
            tls_server(
                9643,
                "tls-b",
                &["b.example.com"],
                &simple(dir.path(), &b_cert, "b"),
            ),
        ],
    );
    yaml.push_str(&tcp_service("a.svc", &[(&a, "v1")]));
    yaml.push_str(&tcp_service("b.svc", &[(&b, "v1")]));
    yaml.push_str(&tcp_vs("a", "a.example.com", "a.svc"));
    yaml.push_str(&tcp_vs("b", "b.example.com", "b.svc"));
    let log = Arc::new(Mutex::new(Vec::new()));
    let gw_dir = tempfile::tempdir().unwrap();
    std::fs::write(gw_dir.path().join("config.yaml"), &yaml).unwrap();
    let sink = log.clone();
    let gw = TestGateway::try_start_with(gw_dir, |s| {
        s.access_log = Some((Format::Text, Sink::Memory(sink)));
    })
    .await
    .expect("start")
    .with_ops()
    .await;
    let addr = gw.port(9643);

    for (sni, cert, name) in [
        ("a.example.com", &a_cert, "a"),
        ("b.example.com", &b_cert, "b"),
    ] {
        let got = tunnel(&TlsClient::sni(sni), addr).await;
        let (seen, greeting) = got.unwrap_or_else(|| panic!("{sni}: refused"));
        assert_eq!(
            seen, cert.der,
            "{sni}: the gateway's certificate for that server"
        );
        assert_eq!(greeting, name, "{sni}: its own tcp route");
    }
    // No server for the name, or no SNI (and no `*` server): no filter chain, no handshake.
    for client in [TlsClient::sni("c.example.com"), TlsClient::default()] {
        let err = client.connect(addr).await.err();
        assert!(err.is_some_and(|e| e.starts_with("handshake")), "closed");
    }

    // Counted as TCP proxy connections of the port, one access log line each with the SNI.
    let lines = || -> Vec<String> {
        String::from_utf8_lossy(&log.lock().unwrap())
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
    let a_line = all.iter().find(|l| l.contains("a.svc")).expect("a's line");
    let rest = a_line.split_once("] ").unwrap().1;
    assert!(rest.starts_with("\"- - -\" 0 - - - \"-\" 5 7 "), "{rest}");
    assert!(
        rest.contains(&format!("\"{}\" outbound|9000||a.svc ", a.addr)),
        "{rest}"
    );
    assert!(rest.contains("a.example.com"), "SNI logged: {rest}");

    let stats = support::Client::http1(gw.ops(OpsPort::Stats))
        .get("s", "/stats/prometheus")
        .await
        .body;
    for (metric, value) in [
        ("envoy_tcp_downstream_cx_total", "2"),
        ("envoy_tcp_downstream_cx_rx_bytes_total", "10"),
        ("envoy_tcp_downstream_cx_tx_bytes_total", "14"),
    ] {
        let line = format!("{metric}{{tcp_prefix=\"outbound_0.0.0.0_9643\"}} {value}");
        assert!(stats.lines().any(|l| l == line), "{line} in\n{stats}");
    }
    // Not HTTP connections.
    let http = "envoy_http_downstream_cx_total{http_conn_manager_prefix=\"outbound_0.0.0.0_9643\"}";
    assert!(
        stats
            .lines()
            .filter(|l| l.starts_with(http))
            .all(|l| l.ends_with(" 0")),
        "{stats}"
    );

    let dump = support::Client::http1(gw.ops(OpsPort::Admin))
        .get("a", "/config_dump")
        .await
        .body;
    let compact: String = dump.split_whitespace().collect();
    assert!(
        compact.contains("\"name\":\"tcp.9643.tls-a.gw.default\""),
        "{dump}"
    );
    assert!(compact.contains("\"tcp_route\":{"), "{dump}");
    assert!(compact.contains("outbound|9000||b.svc"), "{dump}");

    // Shutdown: new connections are refused; an open tunnel keeps working.
    let (mut open, _, _) = TlsClient::sni("a.example.com").connect(addr).await.unwrap();
    assert_eq!(read_line(&mut open).await, "a");
    gw.gw.stop_accepting().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "not accepting"
    );
    open.write_all(b"after\n").await.unwrap();
    assert_eq!(read_line(&mut open).await, "after");
}

#[tokio::test]
async fn mutual_tls_server_refuses_clients_without_the_ca_s_certificate() {
    let (ca, other) = (Ca::new("client ca"), Ca::new("another ca"));
    let dir = tempfile::tempdir().unwrap();
    let server = ca.server(&["m.example"]);
    let (c, k) = server.write(dir.path(), "server");
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let up = L4Upstream::echo("up").await;
    let good = ca.client("alice", &["alice.example"], &[]);
    let stranger = other.client("mallory", &["mallory.example"], &[]);
    for (mode, anonymous_served) in [("MUTUAL", false), ("OPTIONAL_MUTUAL", true)] {
        let tls = format!(
            "{{mode: {mode}, serverCertificate: {}, privateKey: {}, caCertificates: {}}}",
            c.display(),
            k.display(),
            ca_path.display()
        );
        let mut yaml = gateway("gw", &[tls_server(9443, "tls", &["m.example"], &tls)]);
        yaml.push_str(&tcp_service("up.svc", &[(&up, "v1")]));
        yaml.push_str(&tcp_vs("m", "m.example", "up.svc"));
        let gw = TestGateway::start(&yaml).await;
        let addr = gw.port(9443);

        let with = tunnel(&TlsClient::sni("m.example").with_cert(&good), addr).await;
        assert_eq!(
            with.map(|(_, g)| g).as_deref(),
            Some("up"),
            "{mode}: a client with the CA's certificate is tunnelled"
        );
        let without = tunnel(&TlsClient::sni("m.example"), addr).await;
        assert_eq!(
            without.is_some(),
            anonymous_served,
            "{mode}: a client without a certificate"
        );
        let wrong = tunnel(&TlsClient::sni("m.example").with_cert(&stranger), addr).await;
        assert!(
            wrong.is_none(),
            "{mode}: another CA's certificate is refused"
        );
    }
}

/// A VirtualService sending the TLS server's decrypted stream to subsets v1 and v2.
fn weighted(w1: u32, w2: u32) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: echo}}\nspec:\n  hosts: [echo.example.com]\n  gateways: [gw]\n  tcp:\n  - match: [{{port: 9443}}]\n    route:\n    - {{destination: {{host: echo.svc, subset: v1, port: {{number: 9000}}}}, weight: {w1}}}\n    - {{destination: {{host: echo.svc, subset: v2, port: {{number: 9000}}}}, weight: {w2}}}\n---\n")
}

#[tokio::test]
async fn weighted_tcp_routes_behind_a_tls_server_follow_a_reload() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let cert = ca.server(&["echo.example.com"]);
    let (v1, v2) = (L4Upstream::echo("v1").await, L4Upstream::echo("v2").await);
    let mut base = gateway(
        "gw",
        &[tls_server(
            9443,
            "tls",
            &["echo.example.com"],
            &simple(dir.path(), &cert, "echo"),
        )],
    );
    base.push_str(&tcp_service("echo.svc", &[(&v1, "v1"), (&v2, "v2")]));
    base.push_str("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: echo}\nspec:\n  host: echo.svc\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n---\n");
    let gw = TestGateway::start(&format!("{base}{}", weighted(100, 0)))
        .await
        .watching();
    let addr = gw.port(9443);
    let client = TlsClient::sni("echo.example.com");
    let count = || async {
        let mut counts = (0, 0);
        for _ in 0..20 {
            match tunnel(&client, addr).await.map(|(_, g)| g).as_deref() {
                Some("v1") => counts.0 += 1,
                Some("v2") => counts.1 += 1,
                other => panic!("unexpected greeting {other:?}"),
            }
        }
        counts
    };
    assert_eq!(count().await, (20, 0), "weights 100/0");

    // A tunnel opened before the reload keeps its upstream.
    let (mut open, _, _) = client.connect(addr).await.unwrap();
    assert_eq!(read_line(&mut open).await, "v1");

    std::fs::write(gw.config_file(), format!("{base}{}", weighted(0, 100))).unwrap();
    gw.wait_generation(2).await;
    assert_eq!(count().await, (0, 20), "weights 0/100 after the reload");
    open.write_all(b"still\n").await.unwrap();
    assert_eq!(read_line(&mut open).await, "still", "old tunnel untouched");
}

// === validation ===

fn fixture_path() -> String {
    format!(
        "{}/tests/fixtures/l4/tls-terminated-tcp.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A filter chain's name and its tcp route's cluster keys (`None`: an HTTPS chain).
type ChainSummary = (String, Option<Vec<String>>);

#[test]
fn tls_terminating_servers_compile_to_tcp_chains_without_a_skipped_warning() {
    let yaml = std::fs::read_to_string(fixture_path()).unwrap();
    let (resources, load) = load_str(&yaml, "tls-terminated-tcp.yaml", "default");
    assert!(load.errors.is_empty(), "{:#?}", load.errors);
    let (compiled, report) = compile(&resources, &Options::default());
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    let warnings: Vec<String> = report.warnings.iter().map(|w| w.to_string()).collect();
    let is_skip = |w: &&String| w.contains("not supported") || w.contains("skipped");
    let skipped: Vec<&String> = warnings.iter().filter(is_skip).collect();
    // Only the AUTO_PASSTHROUGH server (the passthrough server shares the terminating port).
    assert_eq!(skipped.len(), 1, "{warnings:#?}");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        skipped
            .iter()
            .any(|w| w.contains("AUTO_PASSTHROUGH") && w.contains("not supported")),
        "{warnings:#?}"
    );

    let compiled = compiled.unwrap();
    let ports: Vec<(u16, Vec<ChainSummary>)> = compiled
        .listeners
        .iter()
        .map(|l| {
            let chains = l
                .chains
                .iter()
                .map(|c| {
                    let tcp = c.tcp.as_ref().map(|t| match t {
                        L4Table::Tcp(r) => r
                            .iter()
                            .flat_map(|r| r.clusters.iter().map(|c| c.key.to_string()))
                            .collect(),
                        L4Table::Passthrough(_) => vec!["passthrough?".to_owned()],
                    });
                    (c.name.to_string(), tcp)
                })
                .collect();
            (l.port, chains)
        })
        .collect();
    let key = |h: &str| {
        Some(vec![format!(
            "outbound|9000||{h}.default.svc.cluster.local"
        )])
    };
    assert_eq!(
        ports,
        [
            (
                9443,
                vec![
                    ("tcp.9443.tls-a.tls-gw.default".to_owned(), key("a")),
                    ("tcp.9443.tls-b.tls-gw.default".to_owned(), key("b")),
                    ("https.9443.https-c.tls-gw.default".to_owned(), None),
                ]
            ),
            (
                9444,
                vec![(
                    "tcp.9444.tls-any.tls-gw.default".to_owned(),
                    Some(vec![
                        "outbound|9000|v1|d.default.svc.cluster.local".to_owned(),
                        "outbound|9000|v2|d.default.svc.cluster.local".to_owned(),
                    ])
                )]
            ),
        ]
    );
}

#[test]
fn tunnel_idle_timeouts_come_from_the_destination_rule_top_level_tcp_settings() {
    let yaml = std::fs::read_to_string(fixture_path()).unwrap();
    let (resources, _) = load_str(&yaml, "tls-terminated-tcp.yaml", "default");
    let (compiled, report) = compile(&resources, &Options::default());
    let compiled = compiled.unwrap_or_else(|| panic!("{:#?}", report.errors));
    let idle: Vec<(String, Option<Duration>)> = compiled
        .listeners
        .iter()
        .flat_map(|l| &l.chains)
        .filter_map(|c| match c.tcp.as_ref()? {
            L4Table::Tcp(Some(r)) => Some((c.name.to_string(), r.idle_timeout)),
            _ => None,
        })
        .collect();
    assert_eq!(
        idle,
        [
            ("tcp.9443.tls-a.tls-gw.default".to_owned(), None),
            (
                "tcp.9443.tls-b.tls-gw.default".to_owned(),
                Some(Duration::from_secs(3600))
            ),
            (
                "tcp.9444.tls-any.tls-gw.default".to_owned(),
                Some(Duration::from_secs(90))
            ),
        ],
        "a: 0s (none), b: no DestinationRule (Envoy's 1 h), d: 90s"
    );
}

#[tokio::test]
async fn destination_rule_tcp_idle_timeout_closes_an_idle_tunnel() {
    use meshgate::OpsPort;

    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let cert = ca.server(&["idle.example.com"]);
    let up = L4Upstream::echo("up").await;
    // A port of its own: the metrics recorder is shared by every test of this binary.
    let mut yaml = gateway(
        "gw",
        &[tls_server(
            9743,
            "tls",
            &["idle.example.com"],
            &simple(dir.path(), &cert, "idle"),
        )],
    );
    yaml.push_str(&tcp_service("up.svc", &[(&up, "v1")]));
    yaml.push_str(&tcp_vs("idle", "idle.example.com", "up.svc"));
    yaml.push_str(&support::destination_rule(
        "up.svc",
        "{connectionPool: {tcp: {idleTimeout: 300ms}}}",
    ));
    let gw = TestGateway::start(&yaml).await.with_ops().await;
    let (mut tls, _, _) = TlsClient::sni("idle.example.com")
        .connect(gw.port(9743))
        .await
        .unwrap();
    assert_eq!(read_line(&mut tls).await, "up");
    tls.write_all(
        b"ping
",
    )
    .await
    .unwrap();
    assert_eq!(read_line(&mut tls).await, "ping");
    // Then nothing moves: the gateway closes the tunnel (well before the 1 h default).
    let closed = tokio::time::timeout(Duration::from_secs(10), read_line(&mut tls)).await;
    assert_eq!(closed.as_deref(), Ok(""), "closed after 300 ms idle");

    let line = "envoy_tcp_idle_timeout{tcp_prefix=\"outbound_0.0.0.0_9743\"} 1";
    // Counted before the tunnel's socket is dropped; polled within a deadline all the same.
    let stats = support::Client::http1(gw.ops(OpsPort::Stats));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = stats.get("s", "/stats/prometheus").await.body;
        if body.lines().any(|l| l == line) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{line} in\n{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn meshgate_validate_accepts_tls_terminated_tcp_servers() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshgate"))
        .arg("validate")
        .arg(fixture_path())
        .env_remove("MESHGATE_DEFAULT_NAMESPACE")
        .env_remove("MESHGATE_PROXY_NAMESPACE")
        .output()
        .expect("run meshgate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    let skipped: Vec<&str> = warnings
        .iter()
        .copied()
        .filter(|l| l.contains("not supported") || l.contains("skipped"))
        .collect();
    assert_eq!(warnings, skipped, "{stdout}");
    // The SIMPLE, MUTUAL and OPTIONAL_MUTUAL TLS servers are served, and the passthrough
    // server beside them on 9443; what is left is the AUTO_PASSTHROUGH one.
    assert_eq!(skipped.len(), 1, "{stdout}");
    assert!(skipped[0].contains("spec.servers[5]"), "{stdout}");
}

/// Passthrough and terminated servers on one port (Istio builds one filter chain per server on
/// one listener): the ClientHello's SNI picks the best server name among all of them, exact
/// before the longest `*.` suffix before `*`, so an exact terminated host inside a passthrough
/// wildcard is terminated, and the rest of the wildcard passes through untouched.
#[tokio::test]
async fn passthrough_and_terminated_servers_share_a_port_by_sni() {
    let ca = Ca::new("mixed ca");
    let certs = tempfile::tempdir().unwrap();
    let pass_cert = ca.server(&["pass.example.com"]);
    let wild_cert = ca.server(&["*.wild.example.org"]);
    let term_cert = ca.server(&["term.example.com", "a.wild.example.org"]);
    let pass_up = L4Upstream::tls("pass", &pass_cert).await;
    let wild_up = L4Upstream::tls("wild", &wild_cert).await;
    let mut yaml = gateway(
        "gw",
        &[
            tls_server(
                9443,
                "tls-pass",
                &["pass.example.com", "*.wild.example.org"],
                "{mode: PASSTHROUGH}",
            ),
            format!(
                "{{port: {{number: 9443, name: https-term, protocol: HTTPS}}, hosts: [term.example.com, a.wild.example.org], tls: {}}}",
                simple(certs.path(), &term_cert, "term")
            ),
        ],
    );
    yaml.push_str(&tcp_service("pass.svc", &[(&pass_up, "v1")]));
    yaml.push_str(&tcp_service("wild.svc", &[(&wild_up, "v1")]));
    yaml.push_str("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: sni}\nspec:\n  hosts: [pass.example.com, \"*.wild.example.org\"]\n  gateways: [gw]\n  tls:\n  - match: [{sniHosts: [pass.example.com]}]\n    route: [{destination: {host: pass.svc, port: {number: 9000}}}]\n  - match: [{sniHosts: [\"*.wild.example.org\"]}]\n    route: [{destination: {host: wild.svc, port: {number: 9000}}}]\n---\n");
    yaml.push_str(&support::tls::answering(
        "term",
        &["term.example.com", "a.wild.example.org"],
        &["gw"],
        "terminated",
    ));
    let gw = TestGateway::start(&yaml).await;
    let addr = gw.port(9443);

    // Passed through: the upstream's own certificate, its greeting, bytes echoed.
    for (sni, cert, name) in [
        ("pass.example.com", &pass_cert, "pass"),
        ("b.wild.example.org", &wild_cert, "wild"),
    ] {
        let (seen, greeting) = tunnel(&TlsClient::sni(sni), addr)
            .await
            .unwrap_or_else(|| panic!("{sni}: no tunnel"));
        assert_eq!(seen, cert.der, "{sni}: the upstream's certificate");
        assert_eq!(greeting, name, "{sni}");
    }
    // Terminated here: the gateway's certificate and its HTTP routes, also for the exact name
    // inside the passthrough wildcard.
    for sni in ["term.example.com", "a.wild.example.org"] {
        let r = TlsClient::sni(sni).get(addr, sni, "/").await.unwrap();
        assert_eq!(
            r.server_cert, term_cert.der,
            "{sni}: the gateway's certificate"
        );
        assert_eq!(
            (r.reply.status.as_u16(), r.reply.body.as_str()),
            (200, "terminated"),
            "{sni}"
        );
    }
    // No server for the name, nor for a client without SNI: closed, no handshake.
    for client in [TlsClient::sni("other.example.net"), TlsClient::default()] {
        let err = client.connect(addr).await.err();
        assert!(err.is_some_and(|e| e.starts_with("handshake")), "closed");
    }
}
