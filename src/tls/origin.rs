//! TLS origination configs: one rustls `ClientConfig` per upstream cluster (DestinationRule `tls`
//! SIMPLE / MUTUAL), built once when the cluster is built, from the files or credential the
//! `upstream::OriginTls` names; and the server-certificate checks Envoy's upstream validation
//! context applies (CA chain, auto SAN validation or `subjectAltNames`, `insecureSkipVerify`).
//! May not touch: sockets and pools (`upstream::transport` runs the handshake).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};

use super::material::{ca_path, cert_paths, load_ca, load_cert, CertPaths};
use super::verifier::algorithms;
use super::x509;
use crate::compile::tls::{CaSource, CertSource};
use crate::upstream::{CaFile, ClientCert, OriginTls, Origination};

/// Where a system CA bundle is looked for when `caCertificates` is unset (`SSL_CERT_FILE` first).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Builds the cluster's origination. The error names the DestinationRule, the field and the
/// file, in one line (it is logged, and sent as the reason of every failed request).
///
/// # Errors
/// A certificate, key or CA file that cannot be read or used.
pub fn origination(tls: &OriginTls, credentials_dir: Option<&Path>) -> Result<Origination, String> {
    client_config(tls, credentials_dir)
        .map(|config| Origination::new(Arc::new(config), tls.server_name.as_deref()))
        .map_err(|(field, why)| format!("{}.{field}: {why}", tls.origin))
}

fn client_config(
    tls: &OriginTls,
    dir: Option<&Path>,
) -> Result<ClientConfig, (&'static str, String)> {
    let roots = match &tls.ca {
        _ if tls.insecure_skip_verify => Arc::new(RootCertStore::empty()),
        None => system_roots(),
        Some(ca) => {
            let (field, source) = match ca {
                CaFile::File(p) => ("caCertificates", CaSource::File(p.clone())),
                CaFile::Credential(n) => ("credentialName", CaSource::Credential(n.clone())),
            };
            let path = ca_path(&source, dir).map_err(|e| (field, e.to_string()))?;
            if matches!(ca, CaFile::Credential(_)) && !path.exists() {
                // A credential without CA keys: the system bundle, as for an unset CA.
                system_roots()
            } else {
                load_ca(&path).map_err(|e| (field, e.to_string()))?.0
            }
        }
    };
    let verifier = ServerVerifier::new(tls, roots)?;
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ("mode", e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some(cert) => {
            let (field, source) = match cert {
                ClientCert::Files { cert, key } => (
                    "clientCertificate",
                    CertSource::Files {
                        cert: cert.clone(),
                        key: key.clone(),
                    },
                ),
                ClientCert::Credential(n) => ("credentialName", CertSource::Credential(n.clone())),
            };
            let paths = cert_paths(&source, dir).map_err(|e| (field, e.to_string()))?;
            let served = load_cert(&paths).map_err(|e| (field, e.to_string()))?;
            builder.with_client_cert_resolver(Arc::new(ClientCertFiles::new(paths, served.key)))
        }
    };
    if tls.mesh {
        config.alpn_protocols.push(b"istio".to_vec());
    }
    if tls.alpn_h2 {
        config.alpn_protocols.push(b"h2".to_vec());
    }
    Ok(config)
}

/// The system CA bundle, read once (`SSL_CERT_FILE`, else the usual distribution paths). A
/// FROM-scratch image has none: the store is then empty and every verified handshake fails
/// with an unknown-issuer reason (logged once).
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let candidates = std::env::var_os("SSL_CERT_FILE")
                .map(PathBuf::from)
                .into_iter()
                .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from));
            for path in candidates {
                if let Ok((roots, _)) = load_ca(&path) {
                    return roots;
                }
            }
            tracing::warn!(
                "no system CA bundle found (SSL_CERT_FILE, {}): upstream TLS without caCertificates cannot verify servers",
                SYSTEM_BUNDLES.join(", ")
            );
            Arc::new(RootCertStore::empty())
        })
        .clone()
}

/// Presents the client certificate of a MUTUAL / ISTIO_MUTUAL cluster, re-read when its files
/// change (a Secret volume's `..data` swap, Istio's workload certificate rotation): each new
/// upstream handshake compares the files' size, mtime and inode with the last load (two `stat`s;
/// handshakes are rare, connections are pooled). A pair that does not load is logged once and
/// the previous one is kept.
#[derive(Debug)]
struct ClientCertFiles {
    paths: CertPaths,
    current: Mutex<(Option<[FileStamp; 2]>, Arc<CertifiedKey>)>,
}

/// What tells that a file changed.
type FileStamp = (u64, u64, Option<SystemTime>);

impl ClientCertFiles {
    fn new(paths: CertPaths, key: Arc<CertifiedKey>) -> Self {
        let stamp = Self::stamp(&paths);
        ClientCertFiles {
            paths,
            current: Mutex::new((stamp, key)),
        }
    }

    fn stamp(paths: &CertPaths) -> Option<[FileStamp; 2]> {
        use std::os::unix::fs::MetadataExt;
        let one = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.len(), m.ino(), m.modified().ok()))
        };
        Some([one(&paths.cert)?, one(&paths.key)?])
    }
}

impl ResolvesClientCert for ClientCertFiles {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = Self::stamp(&self.paths);
        if stamp.is_some() && stamp != current.0 {
            current.0 = stamp;
            match load_cert(&self.paths) {
                Ok(served) => {
                    tracing::info!(
                        "upstream client certificate {} reloaded",
                        self.paths.cert.display()
                    );
                    current.1 = served.key;
                }
                Err(e) => tracing::error!("{e}; the previous client certificate stays in use"),
            }
        }
        Some(current.1.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// How the server's chain is checked.
#[derive(Debug)]
enum Chain {
    Verify(Arc<WebPkiServerVerifier>),
    /// No trust anchor at all (no system bundle): every chain is from an unknown issuer.
    NoRoots,
    /// `insecureSkipVerify`.
    Skip,
}

/// The server checks of one cluster.
#[derive(Debug)]
struct ServerVerifier {
    chain: Chain,
    /// Auto SAN validation: the certificate must be valid for the SNI host (`sni` and
    /// `subjectAltNames` unset).
    check_name: bool,
    subject_alt_names: Vec<String>,
}

// === impl ServerVerifier ===

impl ServerVerifier {
    fn new(tls: &OriginTls, roots: Arc<RootCertStore>) -> Result<Self, (&'static str, String)> {
        let chain = if tls.insecure_skip_verify {
            Chain::Skip
        } else {
            // An empty store cannot build a verifier; one that knows no root fails every chain.
            let verifier = WebPkiServerVerifier::builder_with_provider(
                roots,
                Arc::new(rustls::crypto::ring::default_provider()),
            )
            .build();
            match verifier {
                Ok(v) => Chain::Verify(v),
                Err(rustls::client::VerifierBuilderError::NoRootAnchors) => Chain::NoRoots,
                Err(e) => return Err(("caCertificates", e.to_string())),
            }
        };
        Ok(ServerVerifier {
            chain,
            check_name: !tls.explicit_sni && tls.subject_alt_names.is_empty(),
            subject_alt_names: tls.subject_alt_names.clone(),
        })
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let chain = match &self.chain {
            Chain::Verify(v) => v,
            Chain::Skip => return Ok(ServerCertVerified::assertion()),
            Chain::NoRoots => {
                return Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
            }
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Ok(_) => {}
            // webpki checks the chain before the name: this error means the chain is good.
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => {}
            Err(e) => return Err(e),
        }
        if !self.subject_alt_names.is_empty() {
            let facts = x509::facts(end_entity.as_ref())
                .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
            if !facts
                .all_sans
                .iter()
                .any(|san| self.subject_alt_names.contains(san))
            {
                return Err(Error::General(format!(
                    "server certificate SANs {:?} match none of subjectAltNames {:?}",
                    facts.all_sans, self.subject_alt_names
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}
