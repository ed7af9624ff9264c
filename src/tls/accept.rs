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
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};

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

/// A ClientHello read off a connection before deciding what to do with it: its bytes (to replay
/// to a passthrough upstream) and rustls' parse of it (to go on with the handshake here).
pub struct Hello {
    pub accepted: rustls::server::Accepted,
    pub bytes: Vec<u8>,
    /// The SNI, lower case.
    pub sni: Option<String>,
}

/// The most ClientHello bytes read while looking for the SNI (Envoy's TLS inspector reads 64 KiB).
const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// Reads a ClientHello off `tcp` without answering it (`read_client_hello`).
pub async fn read_hello(tcp: &mut TcpStream) -> std::io::Result<Hello> {
    let mut bytes = Vec::new();
    let accepted = read_client_hello(tcp, &mut bytes).await?;
    Ok(Hello {
        sni: sni(&accepted.client_hello()),
        accepted,
        bytes,
    })
}

/// Reads until a whole ClientHello is parsed (at most 64 KiB). Every byte read is kept in
/// `bytes`, to be replayed to a passthrough upstream (and counted as received if it fails).
pub async fn read_client_hello(
    io: &mut (impl tokio::io::AsyncRead + Unpin),
    bytes: &mut Vec<u8>,
) -> std::io::Result<rustls::server::Accepted> {
    use tokio::io::AsyncReadExt;
    let mut acceptor = rustls::server::Acceptor::default();
    let mut chunk = vec![0u8; 4096];
    loop {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let fresh = chunk.get(..n).unwrap_or_default();
        bytes.extend_from_slice(fresh);
        if bytes.len() > MAX_CLIENT_HELLO {
            return Err(std::io::Error::other("ClientHello too large"));
        }
        let mut rest = fresh;
        while !rest.is_empty() {
            acceptor.read_tls(&mut rest)?;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => return Ok(accepted),
            Ok(None) => continue,
            Err((e, _)) => return Err(std::io::Error::other(e)),
        }
    }
}

/// A ClientHello's SNI, lower case.
pub fn sni(hello: &rustls::server::ClientHello<'_>) -> Option<String> {
    hello.server_name().map(|s| s.to_ascii_lowercase())
}

/// How a handshake ended, for the metric and the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Timeout,
    NoFilterChain,
    Error,
}

/// Runs the handshake of `tcp` on `port` within `timeout`, from its first byte or from a
/// ClientHello already read (`hello`, on a port whose passthrough routes needed the SNI first).
/// `None`: it failed (counted; the connection is dropped).
pub async fn handshake(
    tcp: TcpStream,
    hello: Option<Hello>,
    port: &TlsPort,
    gateway_port: u16,
    timeout: Duration,
) -> Option<(Stream, Arc<TlsFacts>)> {
    let peer = tcp.peer_addr().ok();
    let result = tokio::time::timeout(timeout, run(tcp, hello, port)).await;
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

async fn run(
    tcp: TcpStream,
    hello: Option<Hello>,
    port: &TlsPort,
) -> Result<(Stream, Arc<TlsFacts>), Outcome> {
    let start = match hello {
        Some(h) => StartHandshake::from_parts(h.accepted, tcp),
        None => {
            let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
            acceptor.await.map_err(|_| Outcome::Error)?
        }
    };
    let sni: Option<Box<str>> = sni(&start.client_hello()).map(Into::into);
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
