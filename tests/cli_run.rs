//! The real `meshgate` binary: serves the example config, refuses a broken one with every error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_meshgate");

/// Kills the child when the test ends, pass or fail (only the process this test started).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serves_the_example_config() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let child = Command::new(BIN)
        .args(["--config", dir, "--listen", "8080=127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Child(child);
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The gateway logs `listening gateway_port=8080 addr=127.0.0.1:NNNNN` once it accepts.
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("no `listening` line from meshgate");
        if let Some(rest) = line
            .split("addr=")
            .nth(1)
            .filter(|_| line.contains("listening"))
        {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let r = get(&addr, "/hello");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("hello from meshgate\n"), "{r}");
    let r = get(&addr, "/nope");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
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
        stderr.contains(&format!(
            "{prefix}spec.http[0].match[0].uri.regex: invalid regex \"/items/[0-9+\""
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("not started: 2 config error(s)"),
        "{stderr}"
    );
}
