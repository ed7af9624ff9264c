//! Certificate rotation and bad certificates: a Kubernetes Secret volume's `..data` swap under
//! load (no failed request, new handshakes get the new certificate within a second, open
//! connections keep going), a broken new pair refused with a clear log line while the old pair
//! keeps serving, and a server whose files do not load leaving the port's other servers serving.

use crate::support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use support::binary::Binary;
use support::tls::{answering, gateway, https_server, Ca, Issued, TlsClient};
use support::TestGateway;
use tokio::time::Instant;

/// Writes `cert` as a Secret volume: `<dir>/<version>/tls.{crt,key}`, `..data` pointing at it
/// (swapped atomically by a rename, as the kubelet does) and `tls.crt`/`tls.key` through it.
fn secret_volume(dir: &Path, version: &str, cert: &Issued) {
    let data = dir.join(version);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("tls.crt"), &cert.cert_pem).unwrap();
    std::fs::write(data.join("tls.key"), &cert.key_pem).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(f)).is_err() {
            symlink(format!("..data/{f}"), dir.join(f)).unwrap();
        }
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_volume_swap_rotates_under_load_without_a_failed_request() {
    let ca = Ca::new("test ca");
    let (old, new) = (ca.server(&["shop.example"]), ca.server(&["shop.example"]));
    let creds = tempfile::tempdir().unwrap();
    let secret = creds.path().join("shop-cert");
    secret_volume(&secret, "..2026_01_01", &old);
    let mut yaml = gateway(
        "gw",
        &[https_server(
            443,
            "https",
            &["shop.example"],
            "{mode: SIMPLE, credentialName: shop-cert}",
        )],
    );
    yaml.push_str(&answering("shop", &["shop.example"], &["gw"], "shop"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), &yaml).unwrap();
    let creds_path = creds.path().to_path_buf();
    let gw = TestGateway::try_start_with(dir, |s| s.credentials_dir = Some(creds_path))
        .await
        .unwrap();
    let addr = gw.port(443);
    let client = TlsClient::sni("shop.example");

    // An established keep-alive connection, made before the rotation.
    let (mut kept, kept_cert) = client.open(addr).await.unwrap();
    assert_eq!(kept_cert, old.der);

    // Bounded load: 4 clients, a new connection (full handshake) per request.
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed, saw_new) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (stop, done, failed, saw_new, client) = (
            stop.clone(),
            done.clone(),
            failed.clone(),
            saw_new.clone(),
            client.clone(),
        );
        let new_der = new.der.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match client.get(addr, "shop.example", "/").await {
                    Ok(r) if r.reply.status == 200 => {
                        if r.server_cert == new_der {
                            saw_new.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    assert!(
        wait_for(Duration::from_secs(20), || async {
            done.load(Ordering::Relaxed) >= 20
        })
        .await
    );

    secret_volume(&secret, "..2026_02_01", &new);
    let rotated = Instant::now();
    let seen = wait_for(Duration::from_secs(1), || async {
        client
            .get(addr, "shop.example", "/")
            .await
            .map(|r| r.server_cert)
            == Ok(new.der.clone())
    })
    .await;
    assert!(
        seen,
        "new handshakes still get the old certificate 1 s after the swap"
    );
    eprintln!(
        "new certificate served {:?} after the swap",
        rotated.elapsed()
    );
    let at_rotation = done.load(Ordering::Relaxed);
    assert!(
        wait_for(Duration::from_secs(20), || async {
            done.load(Ordering::Relaxed) >= at_rotation + 20
        })
        .await
    );
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests during the rotation"
    );
    assert!(
        saw_new.load(Ordering::Relaxed) > 0,
        "the load never saw the new certificate"
    );

    // The connection made before the rotation is untouched.
    let req = http::Request::builder()
        .uri("/")
        .header("host", "shop.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = kept
        .send_request(req)
        .await
        .expect("the old connection still serves");
    assert_eq!(resp.status(), 200);
}

/// `meshgate` on a config with an HTTP server (so `Binary` finds port 8080) and these HTTPS
/// servers on 8443; returns it, the HTTPS address and the log lines up to its `listening` line.
fn start_binary(dir: &Path, https: &[String]) -> (Binary, std::net::SocketAddr, Vec<String>) {
    let mut servers =
        vec!["{port: {number: 8080, name: http, protocol: HTTP}, hosts: [\"*\"]}".to_string()];
    servers.extend(https.iter().cloned());
    let mut yaml = gateway("gw", &servers);
    yaml.push_str(&answering("all", &["*"], &["gw"], "served"));
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    let bin = Binary::start(dir, &["--listen", "8443=127.0.0.1:0"]);
    loop {
        let line = bin.wait_line("");
        if line.contains("gateway_port=8443") && line.contains("listening") {
            let lines = bin.read_lines();
            let addr = line
                .split("addr=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap();
            return (bin, addr.parse().unwrap(), lines);
        }
    }
}

#[tokio::test]
async fn a_broken_rotation_is_refused_and_the_old_certificate_keeps_serving() {
    let ca = Ca::new("test ca");
    let (old, new) = (ca.server(&["r.example"]), ca.server(&["r.example"]));
    let certs = tempfile::tempdir().unwrap();
    let (c, k) = old.write(certs.path(), "r");
    let config = tempfile::tempdir().unwrap();
    let tls = format!(
        "{{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}",
        c.display(),
        k.display()
    );
    let (bin, addr, _) = start_binary(
        config.path(),
        &[https_server(8443, "https", &["r.example"], &tls)],
    );
    let client = TlsClient::sni("r.example");
    assert_eq!(
        client
            .get(addr, "r.example", "/")
            .await
            .unwrap()
            .server_cert,
        old.der
    );

    // The new certificate without its key: the pair does not match, so it is refused.
    std::fs::write(&c, &new.cert_pem).unwrap();
    let line = bin.wait_line("certificate rotation refused");
    assert!(
        line.contains(&format!(
            "{} does not match the certificate in {}",
            k.display(),
            c.display()
        )),
        "{line}"
    );
    assert!(
        line.contains("the previous certificate keeps serving"),
        "{line}"
    );
    let r = client.get(addr, "r.example", "/").await.unwrap();
    assert_eq!(
        (r.server_cert == old.der, r.reply.body.as_str()),
        (true, "served")
    );

    // Garbage is refused the same way.
    std::fs::write(&c, "not a certificate").unwrap();
    bin.wait_line("certificate rotation refused");
    assert_eq!(
        client
            .get(addr, "r.example", "/")
            .await
            .unwrap()
            .server_cert,
        old.der
    );

    // The complete new pair loads.
    std::fs::write(&k, &new.key_pem).unwrap();
    std::fs::write(&c, &new.cert_pem).unwrap();
    bin.wait_line("certificate reloaded");
    assert!(
        wait_for(Duration::from_secs(5), || async {
            client
                .get(addr, "r.example", "/")
                .await
                .map(|r| r.server_cert)
                == Ok(new.der.clone())
        })
        .await
    );
}

#[tokio::test]
async fn a_bad_certificate_in_one_server_leaves_the_others_serving() {
    let ca = Ca::new("test ca");
    let good = ca.server(&["good.example"]);
    let certs = tempfile::tempdir().unwrap();
    let (c, k) = good.write(certs.path(), "good");
    let config = tempfile::tempdir().unwrap();
    let (missing, missing_key) = (
        certs.path().join("missing.crt"),
        certs.path().join("missing.key"),
    );
    let (_bin, addr, lines) = start_binary(
        config.path(),
        &[
            https_server(
                8443,
                "https-good",
                &["good.example"],
                &format!(
                    "{{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}",
                    c.display(),
                    k.display()
                ),
            ),
            https_server(
                8443,
                "https-bad",
                &["bad.example"],
                &format!(
                    "{{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}",
                    missing.display(),
                    missing_key.display()
                ),
            ),
        ],
    );
    let line = lines
        .iter()
        .find(|l| l.contains("missing.crt"))
        .unwrap_or_else(|| panic!("no error line about missing.crt before listening: {lines:#?}"));
    let wanted = format!(
        "config.yaml#1 Gateway default/gw: spec.servers[2].tls.serverCertificate: cannot read {}",
        missing.display()
    );
    assert!(line.contains(&wanted), "{line}");
    assert!(
        line.contains("handshakes for this server fail until it loads"),
        "{line}"
    );

    let r = TlsClient::sni("good.example")
        .get(addr, "good.example", "/")
        .await
        .unwrap();
    assert_eq!(
        (r.server_cert == good.der, r.reply.body.as_str()),
        (true, "served")
    );
    assert!(TlsClient::sni("bad.example")
        .get(addr, "bad.example", "/")
        .await
        .is_err());

    // Once its files appear, the bad server serves too (as a late Secret does in Istio).
    let late = ca.server(&["bad.example"]);
    std::fs::write(&missing_key, &late.key_pem).unwrap();
    std::fs::write(&missing, &late.cert_pem).unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || async {
            TlsClient::sni("bad.example")
                .get(addr, "bad.example", "/")
                .await
                .map(|r| r.server_cert)
                == Ok(late.der.clone())
        })
        .await
    );
}
