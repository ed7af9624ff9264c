//! Compiled filter chains → what an HTTPS or TLS-terminating port serves: a rustls
//! `ServerConfig` per chain (certificate slot, client verifier, versions, TLS 1.2 suites, ALPN
//! `h2`/`http/1.1` as istiod sets it on every terminating gateway server, session tickets on,
//! 0-RTT off), the chain's routes (HTTP, or a `tcp` route for a `protocol: TLS` server) and the
//! SNI table that picks the chain.
//! May not touch: sockets (`accept` drives handshakes with what this builds).

use std::sync::Arc;

use rustls::crypto::ring::cipher_suite as rs;
use rustls::crypto::CryptoProvider;
use rustls::server::ServerSessionMemoryCache;
use rustls::{ServerConfig, SupportedCipherSuite};

use crate::compile::tls::{CipherSuite, ClientAuth, ServerTls, TlsVersion};
use crate::compile::FilterChain;
use crate::route::{HostTable, L4Table, RouteTable};

use super::material::{ca_path, cert_paths, crl_path, LoadError};
use super::store::{CaFiles, CertSlot, Credentials};
use super::verifier::ChainVerifier;

/// Sessions remembered per chain for TLS 1.2 session-id resumption (tickets need none).
const SESSION_CACHE: usize = 1024;

/// The filter chains of one HTTPS or TLS-terminating port and how SNI picks one.
#[derive(Debug, Default)]
pub struct TlsPort {
    pub chains: Vec<Chain>,
    /// Server names → chain, with Envoy's order: exact, longest `*.` suffix, then the chain of a
    /// `*` server (the only one a client without SNI can reach).
    names: HostTable,
}

/// One filter chain: its TLS setup and its routes.
#[derive(Debug)]
pub struct Chain {
    pub name: Arc<str>,
    pub server_names: Vec<String>,
    pub table: RouteTable,
    /// A TLS-terminated TCP server's route (`L4Table::Tcp`): the decrypted stream is tunnelled,
    /// not served as HTTP. `None`: an HTTPS chain.
    pub tcp: Option<Arc<L4Table>>,
    /// `None`: the chain cannot be set up at all (see the logged error); its handshakes fail.
    pub config: Option<Arc<ServerConfig>>,
    pub cert: Option<Arc<CertSlot>>,
    /// MUTUAL / OPTIONAL_MUTUAL: requests carry `x-forwarded-client-cert`.
    pub client_certs: bool,
}

// === impl TlsPort ===

impl TlsPort {
    /// Builds the port's chains; an error names the Gateway, field and file of a chain whose
    /// certificate or CA cannot be loaded (that chain's handshakes fail; the others serve).
    pub async fn build(
        chains: Vec<FilterChain>,
        credentials: &Credentials,
    ) -> (TlsPort, Vec<String>) {
        let mut port = TlsPort::default();
        let mut errors = Vec::new();
        for fc in chains {
            let i = port.chains.len();
            for n in &fc.server_names {
                port.names.insert(n, i);
            }
            let (config, cert) = match chain_config(&fc.tls, credentials).await {
                Ok((config, cert, err)) => {
                    if let Some((field, e)) = err {
                        errors.push(format!(
                            "{}: {}.{field}: {e}; handshakes for this server fail until it loads",
                            fc.source, fc.field
                        ));
                    }
                    (Some(config), Some(cert))
                }
                Err((field, e)) => {
                    errors.push(format!(
                        "{}: {}.{field}: {e}; this server is not served",
                        fc.source, fc.field
                    ));
                    (None, None)
                }
            };
            port.chains.push(Chain {
                name: fc.name,
                server_names: fc.server_names,
                table: fc.table,
                tcp: fc.tcp.map(Arc::new),
                config,
                cert,
                client_certs: fc.tls.client_auth != ClientAuth::None,
            });
        }
        (port, errors)
    }

    /// How well the best of this port's server names matches `sni` (`None`: no chain would).
    pub fn rank(&self, sni: Option<&str>) -> Option<crate::route::SniRank> {
        crate::route::sni_rank(
            self.chains
                .iter()
                .flat_map(|c| c.server_names.iter().map(String::as_str)),
            sni,
        )
    }

    /// The chain a ClientHello with this SNI gets, if any (no match: the connection is closed).
    pub fn find(&self, sni: Option<&str>) -> Option<&Chain> {
        self.names
            .find(sni.unwrap_or(""))
            .and_then(|i| self.chains.get(i))
    }
}

type FieldError = (&'static str, LoadError);

/// The field that names a server's certificate files.
pub(super) fn cert_field(tls: &ServerTls) -> &'static str {
    match &tls.cert {
        crate::compile::tls::CertSource::Files { .. } => "serverCertificate",
        crate::compile::tls::CertSource::Credential(_) => "credentialName",
    }
}

/// The client CA bundle and revocation list of a server, with the fields that name them.
pub(super) struct ServerCa {
    pub files: CaFiles,
    pub field: &'static str,
    pub crl_field: &'static str,
}

/// The CA files of a MUTUAL / OPTIONAL_MUTUAL server (`None` for SIMPLE).
pub(super) fn ca_files(
    tls: &ServerTls,
    dir: Option<&std::path::Path>,
) -> Option<Result<ServerCa, FieldError>> {
    use crate::compile::tls::{CaSource, CrlSource};
    let ca = tls.ca.as_ref()?;
    let field = match ca {
        CaSource::File(_) => "caCertificates",
        CaSource::Credential(_) => "credentialName",
    };
    let crl_field = match &tls.crl {
        Some(CrlSource::Credential(_)) => "credentialName",
        _ => "caCrl",
    };
    let files = (|| {
        let ca = ca_path(ca, dir).map_err(|e| (field, e))?;
        let crl = match &tls.crl {
            None => None,
            Some(c) => Some(crl_path(c, dir).map_err(|e| (crl_field, e))?),
        };
        Ok(CaFiles { ca, crl })
    })();
    Some(files.map(|files| ServerCa {
        files,
        field,
        crl_field,
    }))
}

/// The config of one chain; `Ok` with an error when a file does not load yet (its slot exists
/// and loads on the next rotation), `Err` when the chain cannot be built at all.
async fn chain_config(
    tls: &ServerTls,
    credentials: &Credentials,
) -> Result<(Arc<ServerConfig>, Arc<CertSlot>, Option<FieldError>), FieldError> {
    let cert_field = cert_field(tls);
    let paths = cert_paths(&tls.cert, credentials.dir()).map_err(|e| (cert_field, e))?;
    let (cert, mut pending) = credentials.cert(&paths).await;
    let mut late = pending.take().map(|e| (cert_field, e));
    let verifier = match ca_files(tls, credentials.dir()).transpose()? {
        None => None,
        Some(ca) => {
            let (slot, err) = credentials.ca(&ca.files).await;
            if late.is_none() {
                late = err.map(|e| (ca.files.field_of(&e, ca.field, ca.crl_field), e));
            }
            Some(Arc::new(ChainVerifier {
                ca: slot,
                mandatory: tls.client_auth == ClientAuth::Required,
                subject_alt_names: tls.subject_alt_names.clone(),
                spki_sha256: tls.spki_sha256.clone(),
                cert_sha256: tls.cert_sha256.clone(),
            }))
        }
    };
    let provider = CryptoProvider {
        cipher_suites: suites(tls),
        ..rustls::crypto::ring::default_provider()
    };
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::V1_3, &rustls::version::TLS13),
        (TlsVersion::V1_2, &rustls::version::TLS12),
    ]
    .into_iter()
    .filter(|(v, _)| tls.min_version <= *v && *v <= tls.max_version)
    .map(|(_, p)| p)
    .collect();
    let builder = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .map_err(|e| {
            let why = LoadError::Settings {
                why: format!("no TLS version can be served with these settings: {e}"),
            };
            ("cipherSuites", why)
        })?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    config.max_early_data_size = 0;
    config.send_half_rtt_data = false;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    if let Some(t) = credentials.ticketer(tls).await {
        config.ticketer = t;
    }
    Ok((Arc::new(config), cert, late))
}

/// TLS 1.3 suites always; TLS 1.2 ones as `cipherSuites` lists them (rustls' default order
/// when the list is empty).
fn suites(tls: &ServerTls) -> Vec<SupportedCipherSuite> {
    let all = rustls::crypto::ring::default_provider().cipher_suites;
    if tls.cipher_suites.is_empty() {
        return all;
    }
    let mut out: Vec<SupportedCipherSuite> = all
        .iter()
        .copied()
        .filter(|s| s.version() == &rustls::version::TLS13)
        .collect();
    out.extend(tls.cipher_suites.iter().map(|s| match s {
        CipherSuite::EcdheEcdsaAes128GcmSha256 => rs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        CipherSuite::EcdheEcdsaAes256GcmSha384 => rs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        CipherSuite::EcdheEcdsaChacha20Poly1305 => {
            rs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        CipherSuite::EcdheRsaAes128GcmSha256 => rs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        CipherSuite::EcdheRsaAes256GcmSha384 => rs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        CipherSuite::EcdheRsaChacha20Poly1305 => rs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    }));
    out
}
