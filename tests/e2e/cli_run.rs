//! The real `meshgate` binary: serves the example config, refuses a broken one with every error.

use crate::support;

use std::process::Command;

use support::binary::{get, Binary, BIN};

#[test]
fn serves_the_example_config() {
    // The single-threaded runtime (one worker) and the multi-threaded one (two).
    for workers in ["1", "2"] {
        let gw = Binary::start(
            concat!(env!("CARGO_MANIFEST_DIR"), "/config").as_ref(),
            &["--concurrency", workers],
        );
        let r = get(&gw.addr, "/hello");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.ends_with("hello from meshgate\n"), "{r}");
        let r = get(&gw.addr, "/nope");
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    }
}

#[test]
fn refuses_to_start_on_a_broken_config_and_names_every_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: shop}\nspec:\n  hosts: [shop.example.com]\n  gateways: [missing-gw]\n  http:\n  - match: [{uri: {regex: \"/items/[0-9+\"}}]\n    route: [{destination: {host: shop}}]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "--config",
            dir.path().to_str().unwrap(),
            "--listen",
            "8080=127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = dir.path().join("bad.yaml");
    let prefix = format!("error: {}#1 VirtualService default/shop: ", file.display());
    assert!(
        stderr.contains(&format!("{prefix}spec.gateways[0]: gateway \"missing-gw\" (resolved to default/missing-gw) does not exist")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{prefix}spec.http[0].match[0].uri.regex: invalid regex \"/items/[0-9+\": unclosed character class")),
        "{stderr}"
    );
    assert!(
        stderr.contains("nothing left to serve once the resources with errors are skipped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("not started: 3 config error(s)"),
        "{stderr}"
    );
}

#[test]
fn sigterm_drains_then_exits_zero() {
    let mut gw = Binary::start(
        concat!(env!("CARGO_MANIFEST_DIR"), "/config").as_ref(),
        &["--drain-duration", "0.5", "--drain-timeout", "5"],
    );
    let line = gw.wait_line("port=Health");
    let health = line
        .split("addr=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("addr= in the health line")
        .to_owned();
    assert!(get(&health, "/healthz/ready").starts_with("HTTP/1.1 200"));
    gw.signal("TERM");
    gw.wait_line("draining");
    // Readiness fails at once while the Gateway port still serves (with connection: close).
    let ready = get(&health, "/healthz/ready");
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    let r = get(&gw.addr, "/hello");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.to_ascii_lowercase().contains("connection: close"), "{r}");
    assert_eq!(gw.wait_exit(std::time::Duration::from_secs(20)), Some(0));
}
