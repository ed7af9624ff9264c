//! Client certificates: MUTUAL accepts a certificate from the configured CA and refuses none, a
//! wrong CA, a SAN outside `subjectAltNames` and a certificate off the SPKI/hash pins;
//! OPTIONAL_MUTUAL serves clients with or without one; `x-forwarded-client-cert` is set as
//! Istio's gateway sets it (SANITIZE_SET: Hash, Cert, Subject, URI, DNS) and a client's own is
//! dropped; credentials come from a Secret-volume-shaped `--credentials-dir`.

use crate::support;

use std::path::Path;

use meshgate::tls::x509;
use support::tls::{gateway, https_server, Ca, Issued, TlsClient};
use support::{static_service, TestGateway, Upstream};

/// A Gateway `gw` with one HTTPS server for `m.example` with this `tls` block, routed to an
/// echoing upstream.
async fn start(tls: &str, up: &Upstream) -> TestGateway {
    TestGateway::start(&config(tls, up)).await
}

/// The config of `start`.
fn config(tls: &str, up: &Upstream) -> String {
    let mut yaml = gateway("gw", &[https_server(443, "https", &["m.example"], tls)]);
    yaml.push_str(&static_service("up.svc", &[(up, &[])]));
    yaml.push_str("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: m}\nspec:\n  hosts: [m.example]\n  gateways: [gw]\n  http:\n  - route: [{destination: {host: up.svc}}]\n---\n");
    yaml
}

fn mutual(dir: &Path, server: &Issued, ca: &Ca, mode: &str, extra: &str) -> String {
    let (c, k) = server.write(dir, "server");
    let ca_path = dir.join("ca.crt");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    format!(
        "{{mode: {mode}, serverCertificate: {}, privateKey: {}, caCertificates: {}{extra}}}",
        c.display(),
        k.display(),
        ca_path.display()
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    x509::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

#[tokio::test]
async fn mutual_tls_accepts_the_ca_s_clients_and_forwards_their_details() {
    let (ca, other) = (Ca::new("client ca"), Ca::new("another ca"));
    let dir = tempfile::tempdir().unwrap();
    let server = ca.server(&["m.example"]);
    let up = Upstream::start("up").await;
    let gw = start(&mutual(dir.path(), &server, &ca, "MUTUAL", ""), &up).await;
    let addr = gw.port(443);
    let good = ca.client("alice", &["alice.example"], &["spiffe://example/alice"]);

    let r = TlsClient::sni("m.example")
        .with_cert(&good)
        .send(
            addr,
            http::Request::builder()
                .uri("/who")
                .header("host", "m.example")
                .header("x-forwarded-client-cert", "By=forged;Hash=00")
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.reply.status, 200, "{}", r.reply.body);
    let xfcc = r
        .reply
        .field("h:x-forwarded-client-cert")
        .expect("xfcc upstream");
    let pem = x509::url_encoded_pem(&good.der);
    let expected = format!(
        "Hash={};Cert=\"{pem}\";Subject=\"O=Example Org,CN=alice\";URI=spiffe://example/alice;DNS=alice.example",
        sha256_hex(&good.der)
    );
    assert_eq!(xfcc, expected);
    assert_eq!(r.reply.field("h:x-forwarded-proto"), Some("https"));

    // No certificate, or one from another CA: refused.
    let none = TlsClient::sni("m.example")
        .get(addr, "m.example", "/")
        .await;
    assert!(none.is_err(), "{:?}", none.map(|r| r.reply.status));
    let stranger = other.client("mallory", &["m.example"], &[]);
    let wrong = TlsClient::sni("m.example")
        .with_cert(&stranger)
        .get(addr, "m.example", "/")
        .await;
    assert!(wrong.is_err(), "{:?}", wrong.map(|r| r.reply.status));
}

#[tokio::test]
async fn subject_alt_names_and_pins_narrow_who_is_accepted() {
    let ca = Ca::new("client ca");
    let dir = tempfile::tempdir().unwrap();
    let server = ca.server(&["m.example"]);
    let up = Upstream::start("up").await;
    let alice = ca.client("alice", &[], &["spiffe://example/alice"]);
    let bob = ca.client("bob", &[], &["spiffe://example/bob"]);

    let gw = start(
        &mutual(
            dir.path(),
            &server,
            &ca,
            "MUTUAL",
            ", subjectAltNames: [spiffe://example/alice]",
        ),
        &up,
    )
    .await;
    let ok = TlsClient::sni("m.example")
        .with_cert(&alice)
        .get(gw.port(443), "m.example", "/")
        .await;
    assert_eq!(ok.unwrap().reply.status, 200);
    let refused = TlsClient::sni("m.example")
        .with_cert(&bob)
        .get(gw.port(443), "m.example", "/")
        .await;
    assert!(refused.is_err(), "a SAN outside subjectAltNames is refused");

    // Pinned by certificate hash (colons, upper case) or by SPKI: either list matching is enough.
    let hash = sha256_hex(&bob.der).to_uppercase();
    let hash = hash
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let spki = {
        use base64::Engine as _;
        let facts = x509::facts(&alice.der).unwrap();
        base64::engine::general_purpose::STANDARD
            .encode(ring::digest::digest(&ring::digest::SHA256, &facts.spki).as_ref())
    };
    let dir2 = tempfile::tempdir().unwrap();
    let gw = start(
        &mutual(
            dir2.path(),
            &server,
            &ca,
            "MUTUAL",
            &format!(", verifyCertificateHash: [\"{hash}\"], verifyCertificateSpki: [\"{spki}\"]"),
        ),
        &up,
    )
    .await;
    for who in [&alice, &bob] {
        let r = TlsClient::sni("m.example")
            .with_cert(who)
            .get(gw.port(443), "m.example", "/")
            .await;
        assert_eq!(r.unwrap().reply.status, 200);
    }
    let carol = ca.client("carol", &[], &[]);
    let r = TlsClient::sni("m.example")
        .with_cert(&carol)
        .get(gw.port(443), "m.example", "/")
        .await;
    assert!(r.is_err(), "a certificate off both pin lists is refused");
}

#[tokio::test]
async fn optional_mutual_serves_clients_with_and_without_certificates() {
    let ca = Ca::new("client ca");
    let dir = tempfile::tempdir().unwrap();
    let server = ca.server(&["m.example"]);
    let up = Upstream::start("up").await;
    let gw = start(
        &mutual(dir.path(), &server, &ca, "OPTIONAL_MUTUAL", ""),
        &up,
    )
    .await;
    let addr = gw.port(443);

    // Without a certificate, a client-sent x-forwarded-client-cert is dropped, not forwarded.
    let anonymous = TlsClient::sni("m.example")
        .send(
            addr,
            http::Request::builder()
                .uri("/")
                .header("host", "m.example")
                .header(
                    "x-forwarded-client-cert",
                    "Hash=forged;Subject=\"CN=admin\"",
                )
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(anonymous.reply.status, 200);
    assert_eq!(anonymous.reply.field("h:x-forwarded-client-cert"), None);
    let alice = ca.client("alice", &[], &[]);
    let known = TlsClient::sni("m.example")
        .with_cert(&alice)
        .get(addr, "m.example", "/")
        .await
        .unwrap();
    let xfcc = known.reply.field("h:x-forwarded-client-cert").unwrap();
    assert!(
        xfcc.contains("Subject=\"O=Example Org,CN=alice\";URI="),
        "{xfcc}"
    );
    // A certificate that does not verify is still refused.
    let stranger = Ca::new("other").client("mallory", &[], &[]);
    assert!(TlsClient::sni("m.example")
        .with_cert(&stranger)
        .get(addr, "m.example", "/")
        .await
        .is_err());
}

#[tokio::test]
async fn credential_names_are_secret_volume_folders() {
    let ca = Ca::new("client ca");
    let creds = tempfile::tempdir().unwrap();
    // `shop-cert` holds tls.crt/tls.key and ca.crt; `api-cert` has its CA in `api-cert-cacert`.
    for (name, host) in [
        ("shop-cert", "shop.example"),
        ("api-cert", "api.example"),
        ("other-cert", "other.example"),
    ] {
        let d = creds.path().join(name);
        std::fs::create_dir(&d).unwrap();
        let cert = ca.server(&[host]);
        std::fs::write(d.join("tls.crt"), &cert.cert_pem).unwrap();
        std::fs::write(d.join("tls.key"), &cert.key_pem).unwrap();
    }
    std::fs::write(creds.path().join("shop-cert/ca.crt"), ca.pem()).unwrap();
    std::fs::create_dir(creds.path().join("api-cert-cacert")).unwrap();
    std::fs::write(creds.path().join("api-cert-cacert/ca.crt"), ca.pem()).unwrap();

    let up = Upstream::start("up").await;
    let mut yaml = gateway(
        "gw",
        &[
            https_server(
                443,
                "https-shop",
                &["shop.example"],
                "{mode: MUTUAL, credentialName: shop-cert}",
            ),
            https_server(
                443,
                "https-api",
                &["api.example"],
                "{mode: MUTUAL, credentialName: api-cert}",
            ),
            // The client CA from another credential.
            https_server(
                443,
                "https-other",
                &["other.example"],
                "{mode: MUTUAL, credentialName: other-cert, caCertCredentialName: shop-cert}",
            ),
        ],
    );
    yaml.push_str(&static_service("up.svc", &[(&up, &[])]));
    yaml.push_str("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: all}\nspec:\n  hosts: [shop.example, api.example, other.example]\n  gateways: [gw]\n  http:\n  - route: [{destination: {host: up.svc}}]\n---\n");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), &yaml).unwrap();
    let creds_path = creds.path().to_path_buf();
    let gw = TestGateway::try_start_with(dir, |s| s.credentials_dir = Some(creds_path))
        .await
        .unwrap();
    let alice = ca.client("alice", &[], &[]);
    for host in ["shop.example", "api.example", "other.example"] {
        let r = TlsClient::sni(host)
            .with_cert(&alice)
            .get(gw.port(443), host, "/")
            .await;
        assert_eq!(r.map(|r| r.reply.status.as_u16()), Ok(200), "{host}");
    }
}

/// ISTIO_MUTUAL at the edge with `--mesh-certs-dir`: the gateway presents its workload
/// certificate and serves clients whose certificate the mesh root signed; others are refused.
#[tokio::test]
async fn istio_mutual_serves_mesh_clients_with_the_gateway_s_workload_certificate() {
    let (mesh, other) = (Ca::new("cluster.local"), Ca::new("another mesh"));
    let certs = tempfile::tempdir().unwrap();
    let own = mesh.workload("spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway");
    std::fs::write(certs.path().join("cert-chain.pem"), &own.cert_pem).unwrap();
    std::fs::write(certs.path().join("key.pem"), &own.key_pem).unwrap();
    std::fs::write(certs.path().join("root-cert.pem"), mesh.pem()).unwrap();
    let up = Upstream::start("up").await;
    let yaml = config("{mode: ISTIO_MUTUAL}", &up);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), &yaml).unwrap();
    let mesh_dir = certs.path().to_path_buf();
    let gw = TestGateway::try_start_with(dir, move |s| s.compile.mesh_certs_dir = Some(mesh_dir))
        .await
        .unwrap();
    let addr = gw.port(443);

    let client = mesh.workload("spiffe://cluster.local/ns/shop/sa/client");
    let r = TlsClient::sni("m.example")
        .with_cert(&client)
        .get(addr, "m.example", "/")
        .await
        .unwrap();
    assert_eq!(r.reply.status, 200, "{}", r.reply.body);
    assert_eq!(r.server_cert, own.der);
    for refused in [
        TlsClient::sni("m.example"),
        TlsClient::sni("m.example").with_cert(&other.workload("spiffe://elsewhere/sa/x")),
    ] {
        let r = refused.get(addr, "m.example", "/").await;
        assert!(r.is_err(), "{:?}", r.map(|r| r.reply.status));
    }

    // Without a mesh identity the server is skipped with a warning that says what is missing.
    let file = certs.path().join("gateway.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshgate"))
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("ISTIO_MUTUAL without --mesh-certs-dir"),
        "{text}"
    );
}
