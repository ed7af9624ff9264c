//! Certificate revocation lists at Gateway servers (`tls.caCrl`, a credential's `ca.crl`):
//! MUTUAL and OPTIONAL_MUTUAL refuse a client certificate the list revokes and accept the CA's
//! other certificates; a list from another CA leaves the status unknown (refused); a rotated
//! list applies to new handshakes, a broken one is refused with a log line naming the file while
//! the previous list keeps verifying.

use crate::support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use support::binary::Binary;
use support::tls::{answering, gateway, https_server, Ca, Issued, TlsClient};
use support::TestGateway;
use tokio::time::Instant;

/// Writes a file whole, by rename (as a Secret volume or an operator's tooling replaces it).
fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Polls `cond` every 10 ms until it holds or `limit` passes.
async fn wait_for<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut cond: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Whether a client with `cert` gets a 200 from `m.example` at `addr`.
async fn served(addr: std::net::SocketAddr, cert: Option<&Issued>) -> bool {
    let mut client = TlsClient::sni("m.example");
    client.client_cert = cert.cloned();
    matches!(client.get(addr, "m.example", "/").await, Ok(r) if r.reply.status == 200)
}

/// Server certificate, CA bundle and list in `dir`; the `tls` block of a `mode` server.
fn files(dir: &Path, ca: &Ca, crl: &str, mode: &str) -> String {
    let (c, k) = ca.server(&["m.example"]).write(dir, "server");
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.join("ca.crl"), crl).unwrap();
    format!(
        "{{mode: {mode}, serverCertificate: {}, privateKey: {}, caCertificates: {}, caCrl: {}}}",
        c.display(),
        k.display(),
        dir.join("ca.crt").display(),
        dir.join("ca.crl").display()
    )
}

fn config(tls: &str) -> String {
    let mut yaml = gateway("gw", &[https_server(443, "https", &["m.example"], tls)]);
    yaml.push_str(&answering("m", &["m.example"], &["gw"], "served"));
    yaml
}

#[tokio::test]
async fn mutual_and_optional_mutual_refuse_revoked_client_certificates() {
    let ca = Ca::new("client ca");
    let alice = ca.client("alice", &[], &[]);
    let mallory = ca.client("mallory", &[], &[]);
    let revoking_mallory = ca.crl(&[&mallory]);

    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(&config(&files(
        dir.path(),
        &ca,
        &revoking_mallory,
        "MUTUAL",
    )))
    .await;
    let addr = gw.port(443);
    assert!(
        served(addr, Some(&alice)).await,
        "a certificate not revoked"
    );
    assert!(!served(addr, Some(&mallory)).await, "a revoked certificate");
    assert!(!served(addr, None).await, "MUTUAL without a certificate");

    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(&config(&files(
        dir.path(),
        &ca,
        &revoking_mallory,
        "OPTIONAL_MUTUAL",
    )))
    .await;
    let addr = gw.port(443);
    assert!(
        served(addr, Some(&alice)).await,
        "a certificate not revoked"
    );
    assert!(
        served(addr, None).await,
        "OPTIONAL_MUTUAL without a certificate"
    );
    assert!(!served(addr, Some(&mallory)).await, "a revoked certificate");

    // A list only from another CA says nothing about these certificates: refused (Envoy, too,
    // wants a list from every CA of the chain once one is configured).
    let dir = tempfile::tempdir().unwrap();
    let other = Ca::new("other ca").crl(&[]);
    let gw = TestGateway::start(&config(&files(dir.path(), &ca, &other, "MUTUAL"))).await;
    assert!(!served(gw.port(443), Some(&alice)).await);
}

/// `<creds>/<name>/` laid out as a mounted Secret, each key through `..data`, swapped by a
/// rename as the kubelet does.
fn secret_volume(dir: &Path, version: &str, keys: &[(&str, &str)]) {
    let data = dir.join(version);
    std::fs::create_dir_all(&data).unwrap();
    for (k, v) in keys {
        std::fs::write(data.join(k), v).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for (k, _) in keys {
        if std::fs::symlink_metadata(dir.join(k)).is_err() {
            symlink(format!("..data/{k}"), dir.join(k)).unwrap();
        }
    }
}

#[tokio::test]
async fn a_credential_s_ca_crl_is_applied_and_its_rotation_follows() {
    let ca = Ca::new("client ca");
    let server = ca.server(&["m.example"]);
    let (alice, bob) = (ca.client("alice", &[], &[]), ca.client("bob", &[], &[]));
    let creds = tempfile::tempdir().unwrap();
    let secret = creds.path().join("m-cert");
    let ca_pem = ca.pem();
    let write = |version: &str, crl: &str| {
        let keys = [
            ("tls.crt", server.cert_pem.as_str()),
            ("tls.key", server.key_pem.as_str()),
            ("ca.crt", ca_pem.as_str()),
            ("ca.crl", crl),
        ];
        secret_volume(&secret, version, &keys);
    };
    write("..v1", &ca.crl(&[&bob]));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        config("{mode: MUTUAL, credentialName: m-cert}"),
    )
    .unwrap();
    let creds_path = creds.path().to_path_buf();
    let gw = TestGateway::try_start_with(dir, |s| s.credentials_dir = Some(creds_path))
        .await
        .unwrap();
    let addr = gw.port(443);
    assert!(served(addr, Some(&alice)).await);
    assert!(!served(addr, Some(&bob)).await, "bob is revoked by ca.crl");

    // The Secret is updated: alice revoked, bob no longer.
    write("..v2", &ca.crl(&[&alice]));
    assert!(
        wait_for(Duration::from_secs(5), || async {
            !served(addr, Some(&alice)).await
        })
        .await,
        "the rotated list is not applied"
    );
    assert!(served(addr, Some(&bob)).await);
}

/// `meshgate` with an HTTPS server on 8443 (`tls`); its HTTPS address.
fn start_binary(dir: &Path, tls: &str) -> (Binary, std::net::SocketAddr) {
    let servers = [
        "{port: {number: 8080, name: http, protocol: HTTP}, hosts: [\"*\"]}".to_string(),
        https_server(8443, "https", &["m.example"], tls),
    ];
    let mut yaml = gateway("gw", &servers);
    yaml.push_str(&answering("m", &["*"], &["gw"], "served"));
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    let bin = Binary::start(dir, &["--listen", "8443=127.0.0.1:0"]);
    loop {
        let line = bin.wait_line("");
        if line.contains("gateway_port=8443") && line.contains("listening") {
            let addr = line
                .split("addr=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap();
            return (bin, addr.parse().unwrap());
        }
    }
}

#[tokio::test]
async fn a_broken_crl_is_refused_and_the_previous_list_keeps_verifying() {
    let ca = Ca::new("client ca");
    let (alice, bob) = (ca.client("alice", &[], &[]), ca.client("bob", &[], &[]));
    let certs = tempfile::tempdir().unwrap();
    let tls = files(certs.path(), &ca, &ca.crl(&[&bob]), "MUTUAL");
    let crl = certs.path().join("ca.crl");
    let config = tempfile::tempdir().unwrap();
    let (bin, addr) = start_binary(config.path(), &tls);
    assert!(served(addr, Some(&alice)).await);
    assert!(!served(addr, Some(&bob)).await);

    // Not a CRL: refused, named; bob stays revoked and alice served.
    replace_file(&crl, &ca.pem());
    let line = bin.wait_line("client CA rotation refused");
    assert!(
        line.contains(&format!(
            "{}: no PEM certificate revocation list",
            crl.display()
        )),
        "{line}"
    );
    assert!(line.contains("the previous bundle and revocation list keep verifying"));
    assert!(served(addr, Some(&alice)).await);
    assert!(!served(addr, Some(&bob)).await);

    // A CRL block that does not parse: refused too.
    replace_file(
        &crl,
        "-----BEGIN X509 CRL-----\nMAMCAQA=\n-----END X509 CRL-----\n",
    );
    let line = bin.wait_line("client CA rotation refused");
    assert!(
        line.contains(&format!(
            "{}: unusable certificate revocation list",
            crl.display()
        )),
        "{line}"
    );
    assert!(!served(addr, Some(&bob)).await);

    // A good list again: bob is served once it is read.
    replace_file(&crl, &ca.crl(&[]));
    bin.wait_line("revocation list reloaded");
    assert!(served(addr, Some(&bob)).await);
    assert!(served(addr, Some(&alice)).await);
}

#[tokio::test]
async fn a_missing_crl_file_fails_the_server_s_handshakes_with_the_file_named() {
    let ca = Ca::new("client ca");
    let alice = ca.client("alice", &[], &[]);
    let certs = tempfile::tempdir().unwrap();
    let tls = files(certs.path(), &ca, "", "MUTUAL");
    let crl = certs.path().join("ca.crl");
    std::fs::remove_file(&crl).unwrap();
    let config = tempfile::tempdir().unwrap();
    let (bin, addr) = start_binary(config.path(), &tls);
    let line = bin
        .read_lines()
        .into_iter()
        .find(|l| l.contains("ca.crl"))
        .unwrap_or_else(|| panic!("no error about ca.crl: {:#?}", bin.read_lines()));
    assert!(
        line.contains(&format!(
            "spec.servers[1].tls.caCrl: cannot read {}",
            crl.display()
        )),
        "{line}"
    );
    assert!(!served(addr, Some(&alice)).await);
    // Once it appears, the server serves.
    replace_file(&crl, &ca.crl(&[]));
    bin.wait_line("revocation list reloaded");
    assert!(served(addr, Some(&alice)).await);
}
