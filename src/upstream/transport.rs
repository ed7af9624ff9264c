//! The transport under an upstream connection: plain TCP, or TLS originated with the cluster's
//! client config (DestinationRule `tls` SIMPLE / MUTUAL). Owns the TLS spec a cluster carries,
//! the built per-cluster `Origination`, the `Stream` type pools speak HTTP over, and the
//! TCP connect with the cluster's socket settings and the handshake (whose failures become
//! `UpstreamError::Tls`).
//! May not touch: reading certificate files (`tls::origin` builds the rustls config).

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;

use crate::net::MaybeTls;

use super::error::{tls_detail, UpstreamError};
use super::settings::{ConnectionSettings, KEEPALIVE_TIME};

/// What a cluster's DestinationRule `tls` asks for, as data (compared on reload like the rest of
/// the spec). Certificate files are read when the cluster is built, not here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginTls {
    /// Where it came from, for error messages: `DestinationRule ns/name (file): spec.…tls`.
    pub origin: String,
    /// `MUTUAL`: the client certificate to present (`clientCertificate`/`privateKey`, or the
    /// credential's `tls.crt`/`tls.key`).
    pub client_cert: Option<ClientCert>,
    /// `caCertificates`, or the credential's `ca.crt`/`cacert`. `None`: the system CA bundle.
    pub ca: Option<CaFile>,
    /// `caCrl`, or the credential's `ca.crl` (when it has one): server certificates it revokes
    /// are refused.
    pub crl: Option<CaFile>,
    /// The SNI sent: `sni`, else the destination host (`None` for an IP host: no SNI is sent).
    pub server_name: Option<String>,
    /// `sni` was set explicitly; without it the server certificate must be valid for the SNI
    /// host (Istio's auto SAN validation).
    pub explicit_sni: bool,
    /// `subjectAltNames`: the server certificate must carry one of these (exact).
    pub subject_alt_names: Vec<String>,
    /// `insecureSkipVerify`: no CA and no name checks. Default is false.
    pub insecure_skip_verify: bool,
    /// Offer ALPN `h2` (HTTP/2 clusters); HTTP/1.1 clusters offer nothing, as Istio does.
    pub alpn_h2: bool,
    /// `ISTIO_MUTUAL`: in-mesh mTLS with the gateway's workload certificate; ALPN `istio` is
    /// offered first (`istio`, `h2` for HTTP/2 clusters), as Istio's sidecars expect.
    pub mesh: bool,
}

/// Where the client certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientCert {
    Files {
        cert: String,
        key: String,
    },
    /// `credentialName`, a folder under `--credentials-dir`.
    Credential(String),
}

/// Where the CA bundle (or the revocation list) comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CaFile {
    File(String),
    /// The CA keys of a credential's folder (absent: the system CA bundle; no revocation list).
    Credential(String),
}

/// A cluster's built TLS origination: one rustls config, made once when the cluster is built.
#[derive(Debug, Clone)]
pub struct Origination {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

/// The stream an upstream connection speaks HTTP over.
pub type Stream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

/// A connection to `endpoint` with the cluster's socket settings, TLS when the cluster
/// originates it (`Err`: its TLS config did not load). The connect timeout covers the
/// handshake too, as Envoy's does.
///
/// # Errors
/// `Connect` for the socket (or the timeout), `Tls` for the handshake.
pub async fn connect(
    endpoint: SocketAddr,
    settings: &ConnectionSettings,
    tls: Option<&Result<Origination, String>>,
) -> Result<Stream, UpstreamError> {
    let tls = match tls {
        None => None,
        Some(Ok(o)) => Some(o),
        Some(Err(why)) => {
            return Err(UpstreamError::Tls {
                detail: tls_detail(why),
            })
        }
    };
    let connecting = async {
        let tcp = tcp(endpoint, settings).await?;
        match tls {
            None => Ok(Stream::Plain(tcp)),
            Some(o) => o.handshake(tcp).await,
        }
    };
    match tokio::time::timeout(settings.connect_timeout, connecting).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::connect_timeout()),
    }
}

/// The local address of an upstream connection (for the access log).
pub fn local_addr(stream: &Stream) -> Option<SocketAddr> {
    match stream {
        Stream::Plain(tcp) => tcp.local_addr().ok(),
        Stream::Tls(tls) => tls.get_ref().0.local_addr().ok(),
    }
}

async fn tcp(endpoint: SocketAddr, s: &ConnectionSettings) -> Result<TcpStream, UpstreamError> {
    let stream = TcpStream::connect(endpoint)
        .await
        .map_err(|e| UpstreamError::connect(&e))?;
    let _ = stream.set_nodelay(true);
    if let Some(k) = &s.keepalive {
        let mut ka = socket2::TcpKeepalive::new().with_time(k.time.unwrap_or(KEEPALIVE_TIME));
        if let Some(i) = k.interval {
            ka = ka.with_interval(i);
        }
        if let Some(p) = k.probes {
            ka = ka.with_retries(p);
        }
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&ka);
    }
    Ok(stream)
}

// === impl Origination ===

impl Origination {
    /// `server_name`: the SNI (and the name a certificate is checked against); an IP address
    /// sends no SNI.
    pub fn new(config: Arc<ClientConfig>, server_name: Option<&str>) -> Origination {
        let server_name = server_name
            .and_then(|n| ServerName::try_from(n.to_owned()).ok())
            // No usable name: rustls sends no SNI for an IP, and the verifier ignores the name.
            .unwrap_or(ServerName::IpAddress(
                std::net::IpAddr::from([0, 0, 0, 0]).into(),
            ));
        Origination {
            config,
            server_name,
        }
    }

    /// The TLS handshake on a connected socket.
    ///
    /// # Errors
    /// `UpstreamError::Tls` with the reason, or `Connect` when the socket failed underneath.
    pub async fn handshake(&self, tcp: TcpStream) -> Result<Stream, UpstreamError> {
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        match connector.connect(self.server_name.clone(), tcp).await {
            Ok(s) => Ok(Stream::Tls(Box::new(s))),
            Err(e) => Err(UpstreamError::from_handshake(&e)),
        }
    }
}
