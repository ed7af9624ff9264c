//! Upstreams for the TLS-passthrough and TCP tests: a rustls server that greets with its name
//! after the handshake and then echoes, and a plain TCP server that does the same.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::tls::Issued;

/// A server on 127.0.0.1 (ephemeral port) that sends `<name>\n` first and then echoes.
pub struct L4Upstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for L4Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl L4Upstream {
    /// Plain TCP.
    pub async fn echo(name: &str) -> L4Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let greeting = format!("{name}\n");
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    if w.write_all(greeting.as_bytes()).await.is_ok() {
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    }
                });
            }
        });
        L4Upstream { addr, task }
    }

    /// TLS terminated here with `cert` (so a client sees this certificate through the gateway).
    pub async fn tls(name: &str, cert: &Issued) -> L4Upstream {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der.clone())],
            PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let greeting = format!("{name}\n");
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(s).await else {
                        return;
                    };
                    let (mut r, mut w) = tokio::io::split(tls);
                    if w.write_all(greeting.as_bytes()).await.is_ok() && w.flush().await.is_ok() {
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    }
                });
            }
        });
        L4Upstream { addr, task }
    }
}

/// Reads one `\n`-terminated line (without it); empty when the stream closed first.
pub async fn read_line(s: impl AsyncRead + Unpin) -> String {
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line).await;
    line.trim_end().to_owned()
}

/// YAML for a STATIC ServiceEntry `host` with TCP port 9000, one endpoint per `(upstream,
/// version label)`.
pub fn tcp_service(host: &str, endpoints: &[(&L4Upstream, &str)]) -> String {
    let eps: String = endpoints
        .iter()
        .map(|(u, v)| {
            format!(
                "  - address: 127.0.0.1\n    ports: {{tcp: {}}}\n    labels: {{version: {v}}}\n",
                u.addr.port()
            )
        })
        .collect();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se-{name}\nspec:\n  hosts: [{host}]\n  ports:\n  - {{number: 9000, name: tcp, protocol: TCP}}\n  resolution: STATIC\n  endpoints:\n{eps}---\n",
        name = host.replace('.', "-"),
    )
}
