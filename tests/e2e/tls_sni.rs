//! HTTPS servers on one port: the certificate and the route table come from the server the SNI
//! names (exact, wildcard, `*` for anything and for no SNI; nothing matching closes the
//! connection), HTTP/2 through ALPN, `x-forwarded-proto: https`, `httpsRedirect` next to HTTPS,
//! a port with plain HTTP servers staying plain, and handshakes that stall or are not TLS.

use crate::support;

use std::time::Duration;

use support::tls::{answering, gateway, https_server, Ca, TlsClient};
use support::{static_service, Client, TestGateway, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn simple(dir: &std::path::Path, stem: &str, cert: &support::tls::Issued) -> String {
    let (c, k) = cert.write(dir, stem);
    format!(
        "{{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}",
        c.display(),
        k.display()
    )
}

#[tokio::test]
async fn sni_picks_the_certificate_and_route_table_of_each_server() {
    let ca = Ca::new("test ca");
    let certs = tempfile::tempdir().unwrap();
    let (a, b, c, w) = (
        ca.server(&["a.example.com"]),
        ca.server(&["b.example.com"]),
        ca.server(&["c.example.com"]),
        ca.server(&["*.wild.example"]),
    );
    let up = Upstream::start("up").await;
    let mut yaml = gateway(
        "gw",
        &[
            https_server(
                443,
                "https-a",
                &["a.example.com"],
                &simple(certs.path(), "a", &a),
            ),
            https_server(
                443,
                "https-b",
                &["b.example.com"],
                &simple(certs.path(), "b", &b),
            ),
            https_server(
                443,
                "https-c",
                &["c.example.com"],
                &simple(certs.path(), "c", &c),
            ),
            https_server(
                443,
                "https-w",
                &["*.wild.example"],
                &simple(certs.path(), "w", &w),
            ),
        ],
    );
    yaml.push_str(&answering("a", &["a.example.com"], &["gw"], "a"));
    yaml.push_str(&answering("b", &["b.example.com"], &["gw"], "b"));
    yaml.push_str(&answering("w", &["*.wild.example"], &["gw"], "w"));
    yaml.push_str(&static_service("up.svc", &[(&up, &[])]));
    yaml.push_str("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: c}\nspec:\n  hosts: [c.example.com]\n  gateways: [gw]\n  http:\n  - route: [{destination: {host: up.svc}}]\n---\n");
    let gw = TestGateway::start(&yaml).await.with_ops().await;
    let addr = gw.port(443);

    for (name, cert, body) in [("a.example.com", &a, "a"), ("b.example.com", &b, "b")] {
        let r = TlsClient::sni(name).get(addr, name, "/x").await.unwrap();
        assert_eq!(r.server_cert, cert.der, "{name}: wrong certificate");
        assert_eq!(
            (r.reply.status.as_u16(), r.reply.body.as_str()),
            (200, body)
        );
    }
    // c is forwarded: the upstream sees https.
    let r = TlsClient::sni("c.example.com")
        .get(addr, "c.example.com", "/fwd")
        .await
        .unwrap();
    assert_eq!(r.server_cert, c.der);
    assert_eq!(r.reply.status, 200, "{}", r.reply.body);
    assert_eq!(r.reply.field("h:x-forwarded-proto"), Some("https"));
    assert_eq!(r.reply.upstream(), "up");

    // Wildcard certificate and host, one level and deeper (Envoy's server_names suffix match).
    for sni in ["x.wild.example", "y.x.wild.example"] {
        let r = TlsClient::sni(sni).get(addr, sni, "/").await.unwrap();
        assert_eq!(r.server_cert, w.der, "{sni}");
        assert_eq!(r.reply.body, "w");
    }

    // Each server has its own route table: SNI a with Host b is a 404 on a's chain.
    let r = TlsClient::sni("a.example.com")
        .get(addr, "b.example.com", "/")
        .await
        .unwrap();
    assert_eq!(r.server_cert, a.der);
    assert_eq!(r.reply.status, 404);

    // No server for the name, or no SNI at all, and no `*` server: no filter chain, no handshake.
    for client in [TlsClient::sni("nobody.example.org"), TlsClient::default()] {
        let err = client.get(addr, "a.example.com", "/").await.unwrap_err();
        assert!(err.starts_with("handshake"), "{err}");
    }

    // The admin API's explainer picks the same chains by SNI as the handshakes above.
    let admin = Client::http1(gw.ops(meshgate::OpsPort::Admin));
    let r = admin
        .get("admin", "/explain?url=https://b.example.com/x")
        .await;
    assert!(
        r.body
            .contains("filter chain: https.443.https-b.gw.default (by SNI)"),
        "{}",
        r.body
    );
    assert!(r.body.contains("result: direct response 200"), "{}", r.body);
    let r = admin
        .get("admin", "/explain?url=https://y.x.wild.example/")
        .await;
    assert!(
        r.body.contains("https.443.https-w.gw.default"),
        "{}",
        r.body
    );
    let r = admin
        .get("admin", "/explain?url=https://nobody.example.org/")
        .await;
    assert!(r.body.contains("the handshake is refused"), "{}", r.body);
}

#[tokio::test]
async fn client_without_sni_gets_the_catch_all_server() {
    let ca = Ca::new("test ca");
    let certs = tempfile::tempdir().unwrap();
    let (any, a) = (
        ca.server(&["default.example"]),
        ca.server(&["a.example.com"]),
    );
    let mut yaml = gateway(
        "gw",
        &[
            https_server(443, "https-any", &["*"], &simple(certs.path(), "any", &any)),
            https_server(
                443,
                "https-a",
                &["a.example.com"],
                &simple(certs.path(), "a", &a),
            ),
        ],
    );
    yaml.push_str(&answering("any", &["*"], &["gw"], "any"));
    let gw = TestGateway::start(&yaml).await;
    let addr = gw.port(443);

    let r = TlsClient::default()
        .get(addr, "whatever", "/")
        .await
        .unwrap();
    assert_eq!(
        r.server_cert, any.der,
        "no SNI gets the `*` server's certificate"
    );
    assert_eq!(r.reply.body, "any");
    let r = TlsClient::sni("other.example")
        .get(addr, "other.example", "/")
        .await
        .unwrap();
    assert_eq!(r.server_cert, any.der, "an unknown SNI too");
    let r = TlsClient::sni("a.example.com")
        .get(addr, "a.example.com", "/")
        .await
        .unwrap();
    assert_eq!(r.server_cert, a.der, "a named server wins over `*`");
    // Its own table: the `*` VirtualService is bound to both servers' hosts.
    assert_eq!(r.reply.body, "any");
}

#[tokio::test]
async fn https_serves_http2_through_alpn() {
    let ca = Ca::new("test ca");
    let certs = tempfile::tempdir().unwrap();
    let cert = ca.server(&["h2.example"]);
    let mut yaml = gateway(
        "gw",
        &[https_server(
            443,
            "https",
            &["h2.example"],
            &simple(certs.path(), "h2", &cert),
        )],
    );
    yaml.push_str(&answering("h2", &["h2.example"], &["gw"], "over h2"));
    let gw = TestGateway::start(&yaml).await;

    let r = TlsClient::sni("h2.example")
        .h2()
        .get(gw.port(443), "h2.example", "/")
        .await
        .unwrap();
    assert_eq!(r.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(
        (r.reply.status.as_u16(), r.reply.body.as_str()),
        (200, "over h2")
    );
    let r = TlsClient::sni("h2.example")
        .get(gw.port(443), "h2.example", "/")
        .await
        .unwrap();
    assert_eq!(r.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(r.version, http::Version::HTTP_11);
}

#[tokio::test]
async fn https_redirect_sends_plain_clients_to_the_https_server() {
    let ca = Ca::new("test ca");
    let certs = tempfile::tempdir().unwrap();
    let cert = ca.server(&["shop.example"]);
    let mut yaml = gateway(
        "gw",
        &[
            "{port: {number: 80, name: http, protocol: HTTP}, hosts: [shop.example], tls: {httpsRedirect: true}}".into(),
            https_server(443, "https", &["shop.example"], &simple(certs.path(), "s", &cert)),
        ],
    );
    yaml.push_str(&answering(
        "shop",
        &["shop.example"],
        &["gw"],
        "secure shop",
    ));
    let gw = TestGateway::start(&yaml).await;

    let plain = Client::http1(gw.port(80))
        .get("shop.example", "/cart?id=1")
        .await;
    assert_eq!(plain.status, 301);
    assert_eq!(
        plain.header("location"),
        Some("https://shop.example/cart?id=1")
    );
    let r = TlsClient::sni("shop.example")
        .get(gw.port(443), "shop.example", "/cart?id=1")
        .await
        .unwrap();
    assert_eq!(
        (r.reply.status.as_u16(), r.reply.body.as_str()),
        (200, "secure shop")
    );
}

#[tokio::test]
async fn a_port_with_plain_http_servers_stays_plain() {
    let ca = Ca::new("test ca");
    let certs = tempfile::tempdir().unwrap();
    let cert = ca.server(&["mixed.example"]);
    let mut yaml = gateway(
        "gw",
        &[
            "{port: {number: 8080, name: http, protocol: HTTP}, hosts: [\"*\"]}".into(),
            https_server(
                8080,
                "https",
                &["mixed.example"],
                &simple(certs.path(), "m", &cert),
            ),
        ],
    );
    yaml.push_str(&answering("all", &["*"], &["gw"], "plain"));
    let (resources, _) = meshgate::config::load_str(&yaml, "t.yaml", "default");
    let (_, report) =
        meshgate::compile::compile(&resources, &meshgate::compile::Options::default());
    assert!(
        report.warnings.iter().any(|w| w.to_string().contains("spec.servers[1]: HTTPS server on port 8080, which plain HTTP servers also use: skipped")),
        "{:#?}",
        report.warnings
    );
    let gw = TestGateway::start(&yaml).await;
    let r = Client::http1(gw.addr()).get("mixed.example", "/").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "plain"));
}

#[tokio::test]
async fn stalled_or_garbage_handshakes_are_closed_and_counted() {
    let ca = Ca::new("test ca");
    let certs = tempfile::tempdir().unwrap();
    let cert = ca.server(&["t.example"]);
    let mut yaml = gateway(
        "gw",
        &[https_server(
            443,
            "https",
            &["t.example"],
            &simple(certs.path(), "t", &cert),
        )],
    );
    yaml.push_str(&answering("t", &["t.example"], &["gw"], "ok"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), &yaml).unwrap();
    let gw = TestGateway::try_start_with(dir, |s| {
        s.limits.tls_handshake_timeout = Some(Duration::from_millis(300));
    })
    .await
    .unwrap()
    .with_ops()
    .await;
    let addr = gw.port(443);

    // A client that connects and says nothing is closed after the handshake timeout.
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf))
        .await
        .expect("closed within the deadline");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    // Plain HTTP, and random bytes, to the HTTPS port: closed, nothing else affected.
    for junk in [
        &b"GET / HTTP/1.1\r\nhost: t.example\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3][..],
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(junk).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(!String::from_utf8_lossy(&out).contains("HTTP/1.1 200"));
    }
    let r = TlsClient::sni("t.example")
        .get(addr, "t.example", "/")
        .await
        .unwrap();
    assert_eq!(r.reply.body, "ok");

    let stats = Client::http1(gw.ops(meshgate::OpsPort::Stats))
        .get("x", "/stats/prometheus")
        .await;
    for result in ["timeout", "error", "success"] {
        assert!(
            stats.body.lines().any(
                |l| l.starts_with("meshgate_downstream_tls_handshakes_total")
                    && l.contains(&format!("result=\"{result}\""))
            ),
            "no {result} count in {}",
            stats.body
        );
    }
}

#[tokio::test]
async fn tls_versions_follow_min_and_max() {
    let ca = Ca::new("test ca");
    let certs = tempfile::tempdir().unwrap();
    let (v13, v12) = (ca.server(&["v13.example"]), ca.server(&["v12.example"]));
    let tls13 = simple(certs.path(), "v13", &v13).replace('}', ", minProtocolVersion: TLSV1_3}");
    let tls12 = simple(certs.path(), "v12", &v12).replace(
        '}',
        ", maxProtocolVersion: TLSV1_2, cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384, AES128-SHA, NOT-A-SUITE]}",
    );
    let mut yaml = gateway(
        "gw",
        &[
            https_server(443, "https-13", &["v13.example"], &tls13),
            https_server(443, "https-12", &["v12.example"], &tls12),
        ],
    );
    yaml.push_str(&answering("all", &["*"], &["gw"], "ok"));
    let (resources, _) = meshgate::config::load_str(&yaml, "t.yaml", "default");
    let (_, report) =
        meshgate::compile::compile(&resources, &meshgate::compile::Options::default());
    let warnings: Vec<String> = report.warnings.iter().map(|w| w.to_string()).collect();
    for wanted in [
        "spec.servers[1].tls.cipherSuites[1]: cipher suite AES128-SHA (rustls has no such suite): not supported by meshgate yet; ignored",
        "spec.servers[1].tls.cipherSuites[2]: invalid cipher suite \"NOT-A-SUITE\": unknown name; ignored",
    ] {
        assert!(warnings.iter().any(|w| w.contains(wanted)), "{wanted} not in {warnings:#?}");
    }
    let gw = TestGateway::start(&yaml).await;
    let addr = gw.port(443);

    let r = TlsClient::sni("v13.example")
        .get(addr, "v13.example", "/")
        .await
        .unwrap();
    assert_eq!(r.tls.0, Some(rustls::ProtocolVersion::TLSv1_3));
    let old = TlsClient {
        tls12_only: true,
        ..TlsClient::sni("v13.example")
    };
    assert!(
        old.get(addr, "v13.example", "/").await.is_err(),
        "TLS 1.2 below minProtocolVersion"
    );

    let r = TlsClient::sni("v12.example")
        .get(addr, "v12.example", "/")
        .await
        .unwrap();
    assert_eq!(
        r.tls.0,
        Some(rustls::ProtocolVersion::TLSv1_2),
        "maxProtocolVersion"
    );
    assert_eq!(
        r.tls.1,
        Some(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        "the one listed suite rustls has"
    );
    assert_eq!(r.reply.body, "ok");
}

/// Istio's `samples/multicluster/expose-istiod-https.yaml` (copied unmodified from the
/// conformance set): HTTPS servers with `protocol: https` (lower case) and a credential now
/// compile into filter chains with no "not supported" warning about them.
#[test]
fn istio_https_sample_validates_without_not_supported_warnings() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls/expose-istiod-https.yaml"
    );
    let yaml = std::fs::read_to_string(path).unwrap();
    let (resources, load) =
        meshgate::config::load_str(&yaml, "expose-istiod-https.yaml", "default");
    assert!(load.errors.is_empty(), "{:#?}", load.errors);
    let (compiled, report) =
        meshgate::compile::compile(&resources, &meshgate::compile::Options::default());
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    let unsupported: Vec<String> = report
        .warnings
        .iter()
        .map(|w| w.to_string())
        .filter(|w| w.contains("not supported") && !w.contains("spec.selector"))
        .collect();
    assert!(unsupported.is_empty(), "{unsupported:#?}");
    let compiled = compiled.unwrap();
    let ports: Vec<(u16, usize)> = compiled
        .listeners
        .iter()
        .map(|l| (l.port, l.chains.len()))
        .collect();
    assert_eq!(ports, [(15012, 1), (15017, 1)]);
}

/// Session resumption is on (a client with a ticket from an earlier connection resumes without
/// a full handshake) and 0-RTT is off (the ticket allows no early data, so none is accepted).
#[tokio::test]
async fn sessions_resume_and_early_data_is_never_accepted() {
    let ca = Ca::new("test ca");
    let certs = tempfile::tempdir().unwrap();
    let up = Upstream::start("up").await;
    let mut yaml = gateway(
        "gw",
        &[https_server(
            443,
            "https",
            &["r.example"],
            &simple(certs.path(), "r", &ca.server(&["r.example"])),
        )],
    );
    yaml.push_str(&static_service("up.svc", &[(&up, &[])]));
    yaml.push_str(&answering("r", &["r.example"], &["gw"], "resumed"));
    let gw = TestGateway::start(&yaml).await;
    let addr = gw.port(443);
    let client = TlsClient::sni("r.example").with_sessions();
    // A full handshake; reading the response also reads the tickets the gateway sent after it.
    let (mut first, _, _) = client.connect(addr).await.unwrap();
    assert_eq!(
        first.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    first
        .write_all(b"GET / HTTP/1.1\r\nhost: r.example\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = first.read_to_end(&mut out).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    for _ in 0..2 {
        let (tls, _, _) = client.connect(addr).await.unwrap();
        let session = tls.get_ref().1;
        assert_eq!(
            session.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        );
        assert!(!session.is_early_data_accepted());
    }
    // A client without the tickets gets a full handshake.
    let (tls, _, _) = TlsClient::sni("r.example").connect(addr).await.unwrap();
    assert_eq!(
        tls.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
}
