//! One downstream TLS handshake on an HTTPS or TLS-terminating port: read the ClientHello, pick
//! the filter chain by SNI (none: the connection is closed, as Envoy closes a connection no chain
//! matches), finish the handshake with that chain's config, all within the handshake timeout;
//! counted per result. Also the connection's stream type (plain or TLS) and its TLS facts for the
//! request path (or, on a TLS-terminated TCP chain, the route the listener tunnels it by).
//! May not touch: HTTP (the listener serves the stream this returns).

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use crate::net::MaybeTls;
use crate::route::L4Table;

use super::config::TlsPort;
use super::xfcc;

/// A downstream connection: plain text, or TLS terminated here.
pub type Stream = MaybeTls<TlsStream<TcpStream>>;

/// What a TLS connection's requests need to know about it.
#[derive(Debug, Default)]
pub struct TlsFacts {
    /// The SNI the client sent (lower case), which picks the chain on every request.
    pub sni: Option<Box<str>>,
    /// `x-forwarded-client-cert` for this connection's requests (a verified client certificate
    /// on a MUTUAL / OPTIONAL_MUTUAL chain), as Istio's gateway sets it (SANITIZE_SET).
    pub xfcc: Option<HeaderValue>,
    /// The chain is a TLS-terminated TCP server's: its route (`L4Table::Tcp`); the listener
    /// tunnels the decrypted stream instead of serving HTTP on it.
    pub tcp: Option<Arc<L4Table>>,
}

/// How a handshake ended, for the metric and the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Timeout,
    NoFilterChain,
    Error,
}

/// Runs the handshake of `tcp` on `port` within `timeout`. `None`: it failed (counted; the
/// connection is dropped).
pub async fn handshake(
    tcp: TcpStream,
    port: &TlsPort,
    gateway_port: u16,
    timeout: Duration,
) -> Option<(Stream, Arc<TlsFacts>)> {
    let peer = tcp.peer_addr().ok();
    let result = tokio::time::timeout(timeout, run(tcp, port)).await;
    let (outcome, done) = match result {
        Err(_) => (Outcome::Timeout, None),
        Ok(Err(o)) => (o, None),
        Ok(Ok(done)) => (Outcome::Ok, Some(done)),
    };
    let label = match outcome {
        Outcome::Ok => "success",
        Outcome::Timeout => "timeout",
        Outcome::NoFilterChain => "no_filter_chain",
        Outcome::Error => "error",
    };
    metrics::counter!("meshgate_downstream_tls_handshakes_total", "gateway_port" => gateway_port.to_string(), "result" => label).increment(1);
    if outcome != Outcome::Ok {
        tracing::debug!(?peer, gateway_port, result = label, "TLS handshake failed");
    }
    done
}

async fn run(tcp: TcpStream, port: &TlsPort) -> Result<(Stream, Arc<TlsFacts>), Outcome> {
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
    let start = acceptor.await.map_err(|_| Outcome::Error)?;
    let sni: Option<Box<str>> = start
        .client_hello()
        .server_name()
        .map(|s| s.to_ascii_lowercase().into());
    let chain = port.find(sni.as_deref()).ok_or(Outcome::NoFilterChain)?;
    let config = chain.config.clone().ok_or(Outcome::NoFilterChain)?;
    let tls = start
        .into_stream(config)
        .await
        .map_err(|_| Outcome::Error)?;
    let xfcc = if chain.client_certs && chain.tcp.is_none() {
        let (_, conn) = tls.get_ref();
        let by = chain
            .cert
            .as_ref()
            .and_then(|c| c.current())
            .map(|c| c.uri_sans.clone())
            .unwrap_or_default();
        conn.peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| xfcc::value(leaf.as_ref(), &by))
    } else {
        None
    };
    let tcp = chain.tcp.clone();
    Ok((
        Stream::Tls(Box::new(tls)),
        Arc::new(TlsFacts { sni, xfcc, tcp }),
    ))
}
