//! Listeners follow the config: a port added by reload starts listening, a removed one stops;
//! unchanged ports keep their socket and their open connections.

use crate::support;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{Client, TestGateway};

fn config(ports: &[u16]) -> String {
    let mut servers = String::new();
    for p in ports {
        servers.push_str(&format!(
            "  - port: {{number: {p}, name: http-{p}, protocol: HTTP}}\n    hosts: [\"*\"]\n"
        ));
    }
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  servers:\n{servers}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - directResponse: {{status: 200, body: {{string: ok}}}}\n"
    )
}

/// One request on an existing keep-alive connection; returns the status line.
async fn request_on(conn: &mut TcpStream) -> String {
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    // The reply is small and has content-length: 2; read until its body arrived.
    while !got.ends_with(b"\r\n\r\nok") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn ports_follow_the_config() {
    let gw = TestGateway::start_watching(&config(&[8080])).await;
    let a8080 = gw.addr();
    let mut kept = TcpStream::connect(a8080).await.unwrap();
    assert_eq!(request_on(&mut kept).await, "HTTP/1.1 200 OK");

    // Add 9090.
    std::fs::write(gw.config_file(), config(&[8080, 9090])).unwrap();
    gw.wait_generation(2).await;
    let a9090 = gw.port(9090);
    assert_eq!(Client::http1(a9090).get("x", "/").await.body, "ok");
    assert_eq!(gw.addr(), a8080, "8080 keeps its socket");
    assert_eq!(
        request_on(&mut kept).await,
        "HTTP/1.1 200 OK",
        "open connection on 8080 undisturbed"
    );

    // Remove 9090: once the reload is live, its socket no longer accepts.
    std::fs::write(gw.config_file(), config(&[8080])).unwrap();
    gw.wait_generation(3).await;
    assert!(gw.gw.addr(9090).is_none());
    let refused = TcpStream::connect(a9090).await;
    assert!(refused.is_err(), "9090 still accepts connections");
    assert_eq!(gw.addr(), a8080);
    assert_eq!(
        request_on(&mut kept).await,
        "HTTP/1.1 200 OK",
        "open connection on 8080 still undisturbed"
    );
}
