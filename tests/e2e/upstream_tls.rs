//! TLS origination to upstreams (DestinationRule `tls` SIMPLE / MUTUAL) against real rustls
//! servers started here: a CA the rule names is trusted and others are refused (503 `UF` with
//! Envoy's `TLS_error` reason), the SNI sent, auto SAN validation and `subjectAltNames`,
//! `insecureSkipVerify`, client certificates, and keep-alive reuse of TLS connections.

use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::tls::{Ca, Issued};
use support::{destination_rule, gateway_yaml, service_at, virtual_service, Client, TestGateway};
use tokio::net::TcpListener;

/// An HTTPS upstream: answers `sni=<name>` (and ` alpn=<protocol>` when one was negotiated),
/// counts TLS connections and keeps the client certificates it saw (DER).
struct TlsUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    snis: Arc<Mutex<Vec<String>>>,
    peers: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl TlsUpstream {
    /// Serves `cert`; with `client_ca`, a client certificate from it is required.
    async fn start(cert: &Issued, client_ca: Option<&Ca>) -> TlsUpstream {
        Self::start_with(cert, client_ca, false).await
    }

    /// `h2`: offers only ALPN `h2` and speaks HTTP/2 (the body then says `alpn=h2`).
    async fn start_with(cert: &Issued, client_ca: Option<&Ca>, h2: bool) -> TlsUpstream {
        let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[] };
        Self::start_alpn(cert, client_ca, alpn, h2).await
    }

    /// Offers `alpn` (in order) and speaks HTTP/2 when `h2`.
    async fn start_alpn(
        cert: &Issued,
        client_ca: Option<&Ca>,
        alpn: &[&[u8]],
        h2: bool,
    ) -> TlsUpstream {
        let chain = vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.cert.der().clone()).unwrap();
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(v)
            }
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // No resumption: a resumed session would show the first connection's client certificate.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let snis = Arc::new(Mutex::new(Vec::new()));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (c, s, pe) = (connections.clone(), snis.clone(), peers.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, c, s, pe) = (acceptor.clone(), c.clone(), s.clone(), pe.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    c.fetch_add(1, Ordering::SeqCst);
                    let session = tls.get_ref().1;
                    let sni = session.server_name().unwrap_or("").to_owned();
                    let alpn = session
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned());
                    if let Some(leaf) = session.peer_certificates().and_then(|c| c.first()) {
                        pe.lock().unwrap().push(leaf.to_vec());
                    }
                    s.lock().unwrap().push(sni.clone());
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let mut body = match &alpn {
                            Some(p) => format!("sni={sni} alpn={p}"),
                            None => format!("sni={sni}"),
                        };
                        async move {
                            // A POST's body is read and its size said.
                            if req.method() == hyper::Method::POST {
                                let got = http_body_util::BodyExt::collect(req.into_body())
                                    .await?
                                    .to_bytes();
                                body.push_str(&format!(" bytes={}", got.len()));
                            }
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(
                                body,
                            ))))
                        }
                    });
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), svc)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), svc)
                            .await;
                    }
                });
            }
        });
        TlsUpstream {
            addr,
            connections,
            snis,
            peers,
        }
    }
}

/// The gateway routing every host to `tls.svc` (the upstream) under DestinationRule `policy`.
async fn gateway_to(up: &TlsUpstream, policy: &str) -> TestGateway {
    gateway_to_service(up, "HTTP", policy).await
}

async fn gateway_to_service(up: &TlsUpstream, protocol: &str, policy: &str) -> TestGateway {
    TestGateway::start(&config_to(up, protocol, policy)).await
}

/// The config of `gateway_to_service`.
fn config_to(up: &TlsUpstream, protocol: &str, policy: &str) -> String {
    let mut yaml = gateway_yaml(&["*"]);
    yaml.push_str(&service_at("tls.svc", protocol, &[up.addr]));
    yaml.push_str(&destination_rule("tls.svc", policy));
    yaml.push_str(&virtual_service(
        "  - route: [{destination: {host: tls.svc}}]\n",
    ));
    yaml
}

/// Writes a file the way a Secret volume or Istio's agent replaces it: whole, by rename.
fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn write_ca(dir: &Path, ca: &Ca, name: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, ca.pem()).unwrap();
    p.display().to_string()
}

/// An upstream with a certificate for `tls.svc`, and the gateway sending to it with SIMPLE TLS
/// and the signing CA (written in `dir`).
async fn simple_upstream(dir: &Path) -> (TlsUpstream, TestGateway) {
    let ca = Ca::new("upstream ca");
    let up = TlsUpstream::start(&ca.server(&["tls.svc"]), None).await;
    let ca_file = write_ca(dir, &ca, "ca.crt");
    let gw = gateway_to(
        &up,
        &format!("{{tls: {{mode: SIMPLE, caCertificates: {ca_file}}}}}"),
    )
    .await;
    (up, gw)
}

#[tokio::test]
async fn simple_with_the_signing_ca_is_served_over_one_reused_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (up, gw) = simple_upstream(dir.path()).await;
    let client = Client::http1(gw.port(8080));
    for _ in 0..3 {
        let r = client.get("shop.example", "/").await;
        assert_eq!(r.status, 200, "{}", r.body);
        // No `sni`: the destination host is sent.
        assert_eq!(r.body, "sni=tls.svc");
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 1, "keep-alive reuse");
}

#[tokio::test]
async fn request_bodies_cross_a_tls_upstream_whole_on_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (up, gw) = simple_upstream(dir.path()).await;
    let client = Client::http1(gw.port(8080));
    // Larger than TLS records and socket buffers: written in many pieces, flushed at the end.
    for len in [1, 300 * 1024, 17 * 1024] {
        let req = client
            .request("shop.example", "/")
            .method("POST")
            .body(Full::new(Bytes::from(vec![b'x'; len])))
            .unwrap();
        let r = client.send(req).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, format!("sni=tls.svc bytes={len}"));
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 1, "keep-alive reuse");
}

#[tokio::test]
async fn wrong_ca_is_503_uf_with_the_tls_reason() {
    let dir = tempfile::tempdir().unwrap();
    let up = TlsUpstream::start(&Ca::new("real").server(&["tls.svc"]), None).await;
    let other = write_ca(dir.path(), &Ca::new("other"), "other.crt");
    let gw = gateway_to(
        &up,
        &format!("{{tls: {{mode: SIMPLE, caCertificates: {other}}}}}"),
    )
    .await;
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 503);
    assert!(
        // Gateways retry connect failures by default: Envoy's "retried and the latest" form.
        r.body.starts_with("upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: TLS_error:|CERTIFICATE_VERIFY_FAILED"),
        "{}",
        r.body
    );
    assert!(r.body.ends_with(":TLS_error_end"), "{}", r.body);
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_server() {
    let up = TlsUpstream::start(&Ca::new("unknown").server(&["elsewhere"]), None).await;
    let gw = gateway_to(&up, "{tls: {mode: SIMPLE, insecureSkipVerify: true}}").await;
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn server_names_are_checked_auto_or_by_subject_alt_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let ca_file = write_ca(dir.path(), &ca, "ca.crt");
    // A certificate for another name: auto SAN validation refuses it.
    let up = TlsUpstream::start(&ca.server(&["other.example"]), None).await;
    let gw = gateway_to(
        &up,
        &format!("{{tls: {{mode: SIMPLE, caCertificates: {ca_file}}}}}"),
    )
    .await;
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("TLS_error:|CERTIFICATE_VERIFY_FAILED"),
        "{}",
        r.body
    );
    // `subjectAltNames` naming it: served.
    let gw = gateway_to(
        &up,
        &format!("{{tls: {{mode: SIMPLE, caCertificates: {ca_file}, subjectAltNames: [other.example]}}}}"),
    )
    .await;
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // `subjectAltNames` not naming it: refused, with the names in the reason.
    let gw = gateway_to(
        &up,
        &format!(
            "{{tls: {{mode: SIMPLE, caCertificates: {ca_file}, subjectAltNames: [tls.svc]}}}}"
        ),
    )
    .await;
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("match none of subjectAltNames"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn sni_is_sent_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let ca_file = write_ca(dir.path(), &ca, "ca.crt");
    let up = TlsUpstream::start(&ca.server(&["api.example"]), None).await;
    let gw = gateway_to(
        &up,
        &format!("{{tls: {{mode: SIMPLE, caCertificates: {ca_file}, sni: api.example}}}}"),
    )
    .await;
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "sni=api.example");
    assert_eq!(*up.snis.lock().unwrap(), vec!["api.example".to_owned()]);
}

#[tokio::test]
async fn mutual_presents_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let ca_file = write_ca(dir.path(), &ca, "ca.crt");
    let up = TlsUpstream::start(&ca.server(&["tls.svc"]), Some(&ca)).await;
    let (cert, key) = ca
        .client("gateway", &[], &["spiffe://example/gw"])
        .write(dir.path(), "client");
    let gw = gateway_to(
        &up,
        &format!(
            "{{tls: {{mode: MUTUAL, caCertificates: {ca_file}, clientCertificate: {}, privateKey: {}}}}}",
            cert.display(),
            key.display()
        ),
    )
    .await;
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Without a client certificate the server refuses the connection.
    let gw = gateway_to(
        &up,
        &format!("{{tls: {{mode: SIMPLE, caCertificates: {ca_file}}}}}"),
    )
    .await;
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
}

#[tokio::test]
async fn an_unreadable_client_certificate_fails_the_cluster_with_the_file_named() {
    let up = TlsUpstream::start(&Ca::new("ca").server(&["tls.svc"]), None).await;
    let gw = gateway_to(
        &up,
        "{tls: {mode: MUTUAL, insecureSkipVerify: true, clientCertificate: /nonexistent/c.pem, privateKey: /nonexistent/k.pem}}",
    )
    .await;
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body
            .contains("clientCertificate: cannot read /nonexistent/c.pem"),
        "{}",
        r.body
    );
    assert_eq!(up.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn port_level_tls_applies_to_its_port() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let ca_file = write_ca(dir.path(), &ca, "ca.crt");
    let up = TlsUpstream::start(&ca.server(&["tls.svc"]), None).await;
    let gw = gateway_to(
        &up,
        &format!("{{portLevelSettings: [{{port: {{number: 80}}, tls: {{mode: SIMPLE, caCertificates: {ca_file}}}}}]}}"),
    )
    .await;
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "sni=tls.svc");
}

#[tokio::test]
async fn mutual_credential_name_is_a_secret_volume_folder() {
    let creds = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let up = TlsUpstream::start(&ca.server(&["tls.svc"]), Some(&ca)).await;
    let folder = creds.path().join("upstream-client");
    std::fs::create_dir(&folder).unwrap();
    let client = ca.client("gateway", &[], &[]);
    std::fs::write(folder.join("tls.crt"), &client.cert_pem).unwrap();
    std::fs::write(folder.join("tls.key"), &client.key_pem).unwrap();
    std::fs::write(folder.join("ca.crt"), ca.pem()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = gateway_yaml(&["*"]);
    yaml.push_str(&service_at("tls.svc", "HTTP", &[up.addr]));
    yaml.push_str(&destination_rule(
        "tls.svc",
        "{tls: {mode: MUTUAL, credentialName: upstream-client}}",
    ));
    yaml.push_str(&virtual_service(
        "  - route: [{destination: {host: tls.svc}}]\n",
    ));
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    let path = creds.path().to_owned();
    let gw = TestGateway::try_start_with(dir, |s| s.credentials_dir = Some(path))
        .await
        .unwrap();
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn http2_clusters_offer_alpn_h2_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let ca_file = write_ca(dir.path(), &ca, "ca.crt");
    let up = TlsUpstream::start_with(&ca.server(&["tls.svc"]), None, true).await;
    let policy = format!("{{tls: {{mode: SIMPLE, caCertificates: {ca_file}}}}}");
    let gw = gateway_to_service(&up, "HTTP2", &policy).await;
    let client = Client::http1(gw.port(8080));
    for _ in 0..2 {
        let r = client.get("shop.example", "/").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, "sni=tls.svc alpn=h2");
    }
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "one multiplexed connection"
    );
    // A wrong CA fails the HTTP/2 path the same way.
    let other = write_ca(dir.path(), &Ca::new("other"), "other.crt");
    let policy = format!("{{tls: {{mode: SIMPLE, caCertificates: {other}}}}}");
    let gw = gateway_to_service(&up, "HTTP2", &policy).await;
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("TLS_error:|CERTIFICATE_VERIFY_FAILED"),
        "{}",
        r.body
    );
}

/// ISTIO_MUTUAL with `--mesh-certs-dir`: the workload certificate from Istio's file layout is
/// presented, the mesh root verifies the server, SNI is Istio's cluster key, ALPN `istio`; a
/// rotated workload certificate is presented by the next new connection; `subjectAltNames`
/// checks the server's SPIFFE identity.
#[tokio::test]
async fn istio_mutual_presents_the_mesh_workload_certificate() {
    let mesh = Ca::new("cluster.local");
    let certs = tempfile::tempdir().unwrap();
    let gateway_id =
        "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";
    let first = mesh.workload(gateway_id);
    replace_file(&certs.path().join("cert-chain.pem"), &first.cert_pem);
    replace_file(&certs.path().join("key.pem"), &first.key_pem);
    replace_file(&certs.path().join("root-cert.pem"), &mesh.pem());
    let server = mesh.workload("spiffe://cluster.local/ns/shop/sa/shop");
    let up = TlsUpstream::start_alpn(&server, Some(&mesh), &[b"istio", b"http/1.1"], false).await;

    let start = |policy: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.yaml"),
            config_to(&up, "HTTP", policy),
        )
        .unwrap();
        let mesh_dir = certs.path().to_path_buf();
        TestGateway::try_start_with(dir, move |s| s.compile.mesh_certs_dir = Some(mesh_dir))
    };
    // One request per upstream connection, so every request shows the certificate presented.
    let gw =
        start("{tls: {mode: ISTIO_MUTUAL}, connectionPool: {http: {maxRequestsPerConnection: 1}}}")
            .await
            .unwrap();
    let client = Client::http1(gw.port(8080));
    let r = client.get("shop.example", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "sni=outbound_.80_._.tls.svc alpn=istio");
    assert_eq!(up.peers.lock().unwrap().last(), Some(&first.der));

    // Istio's agent rotates the workload certificate: new connections present the new one.
    let second = mesh.workload(gateway_id);
    replace_file(&certs.path().join("key.pem"), &second.key_pem);
    replace_file(&certs.path().join("cert-chain.pem"), &second.cert_pem);
    let r = client.get("shop.example", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.peers.lock().unwrap().last(), Some(&second.der));
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);

    // The server's identity is checked against subjectAltNames.
    let gw = start(
        "{tls: {mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://cluster.local/ns/shop/sa/other]}}",
    )
    .await
    .unwrap();
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("match none of subjectAltNames"),
        "{}",
        r.body
    );
    let gw = start(
        "{tls: {mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://cluster.local/ns/shop/sa/shop]}}",
    )
    .await
    .unwrap();
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The start of the 503 body of a refused upstream certificate (Envoy's UF text and reason).
const VERIFY_FAILED: &str = "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: TLS_error:|CERTIFICATE_VERIFY_FAILED";

/// `caCrl`: a server certificate the list revokes is refused with 503 UF and the TLS reason;
/// another certificate from the same CA is served.
#[tokio::test]
async fn ca_crl_refuses_a_revoked_server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("upstream ca");
    let (good, revoked) = (ca.server(&["tls.svc"]), ca.server(&["tls.svc"]));
    let ca_file = write_ca(dir.path(), &ca, "ca.crt");
    let crl = dir.path().join("ca.crl");
    std::fs::write(&crl, ca.crl(&[&revoked])).unwrap();
    let policy = format!(
        "{{tls: {{mode: SIMPLE, caCertificates: {ca_file}, caCrl: {}}}}}",
        crl.display()
    );

    let up = TlsUpstream::start(&good, None).await;
    let gw = gateway_to(&up, &policy).await;
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "sni=tls.svc"));

    let up = TlsUpstream::start(&revoked, None).await;
    let gw = gateway_to(&up, &policy).await;
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.starts_with(VERIFY_FAILED), "{}", r.body);
    assert!(r.body.contains("Revoked"), "{}", r.body);
    assert_eq!(up.connections.load(Ordering::SeqCst), 0);
}

/// A credential's `ca.crl` applies to MUTUAL with `credentialName`, as Istio's Secret key does.
#[tokio::test]
async fn a_credential_s_ca_crl_applies_upstream() {
    let creds = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let server = ca.server(&["tls.svc"]);
    let up = TlsUpstream::start(&server, Some(&ca)).await;
    let folder = creds.path().join("upstream-client");
    std::fs::create_dir(&folder).unwrap();
    let client = ca.client("gateway", &[], &[]);
    std::fs::write(folder.join("tls.crt"), &client.cert_pem).unwrap();
    std::fs::write(folder.join("tls.key"), &client.key_pem).unwrap();
    std::fs::write(folder.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(folder.join("ca.crl"), ca.crl(&[&server])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        config_to(
            &up,
            "HTTP",
            "{tls: {mode: MUTUAL, credentialName: upstream-client}}",
        ),
    )
    .unwrap();
    let path = creds.path().to_owned();
    let gw = TestGateway::try_start_with(dir, |s| s.credentials_dir = Some(path))
        .await
        .unwrap();
    let r = Client::http1(gw.port(8080)).get("shop.example", "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("Revoked"), "{}", r.body);
}

/// The CA bundle and list are read again when their files change: each new upstream connection
/// (one request per connection here) uses what the files hold then; a list that does not load
/// is refused and the previous one stays in use.
#[tokio::test]
async fn a_rotated_ca_bundle_and_crl_apply_to_new_upstream_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, ca) = (Ca::new("old ca"), Ca::new("new ca"));
    let server = ca.server(&["tls.svc"]);
    let up = TlsUpstream::start(&server, None).await;
    let ca_file = dir.path().join("ca.crt");
    let crl = dir.path().join("ca.crl");
    replace_file(&ca_file, &old_ca.pem());
    replace_file(&crl, &old_ca.crl(&[]));
    let gw = gateway_to(
        &up,
        &format!(
            "{{tls: {{mode: SIMPLE, caCertificates: {}, caCrl: {}}}, connectionPool: {{http: {{maxRequestsPerConnection: 1}}}}}}",
            ca_file.display(),
            crl.display()
        ),
    )
    .await;
    let client = Client::http1(gw.port(8080));
    let r = client.get("shop.example", "/").await;
    assert_eq!(
        r.status, 503,
        "the old CA does not know the server: {}",
        r.body
    );

    // The bundle and list are rotated to the server's CA.
    replace_file(&ca_file, &ca.pem());
    replace_file(&crl, &ca.crl(&[]));
    let r = client.get("shop.example", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A broken list: refused, the previous (empty) list stays in use.
    replace_file(&crl, "not a revocation list");
    let r = client.get("shop.example", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The server's certificate revoked: new connections are refused.
    replace_file(&crl, &ca.crl(&[&server]));
    let r = client.get("shop.example", "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("Revoked"), "{}", r.body);
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}
