//! TLS origination configs: one rustls `ClientConfig` per upstream cluster (DestinationRule `tls`
//! SIMPLE / MUTUAL), built once when the cluster is built, from the files or credential the
//! `upstream::OriginTls` names; and the server-certificate checks Envoy's upstream validation
//! context applies (CA chain and revocation list through `trust`, which re-reads them when their
//! files change; auto SAN validation or `subjectAltNames`, `insecureSkipVerify`).
//! May not touch: sockets and pools (`upstream::transport` runs the handshake).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, SignatureScheme};

use super::material::{ca_path, cert_paths, crl_path, load_cert, CertPaths, LoadError};
use super::trust::{stamp, FileStamp, Trust};
use super::verifier::algorithms;
use super::x509;
use crate::compile::tls::{CaSource, CertSource, CrlSource};
use crate::upstream::{CaFile, ClientCert, OriginTls, Origination};

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
    let chain = if tls.insecure_skip_verify {
        Chain::Skip
    } else {
        Chain::Verify(trust(tls, dir)?)
    };
    let verifier = ServerVerifier::new(tls, chain);
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

/// The cluster's CA bundle and revocation list.
fn trust(tls: &OriginTls, dir: Option<&Path>) -> Result<Trust, (&'static str, String)> {
    let ca = match &tls.ca {
        None => None,
        Some(ca) => {
            let (field, source) = match ca {
                CaFile::File(p) => ("caCertificates", CaSource::File(p.clone())),
                CaFile::Credential(n) => ("credentialName", CaSource::Credential(n.clone())),
            };
            let path = ca_path(&source, dir).map_err(|e| (field, e.to_string()))?;
            // A credential without CA keys: the system bundle, as for an unset CA.
            let system = matches!(ca, CaFile::Credential(_)) && !path.exists();
            (!system).then_some((field, path))
        }
    };
    let crl = match &tls.crl {
        None => None,
        Some(crl) => {
            let (field, source) = match crl {
                CaFile::File(p) => ("caCrl", CrlSource::File(p.clone())),
                CaFile::Credential(n) => ("credentialName", CrlSource::Credential(n.clone())),
            };
            let path = crl_path(&source, dir).map_err(|e| (field, e.to_string()))?;
            Some((field, path))
        }
    };
    let field_of = |e: &LoadError| match (&crl, e.path()) {
        (Some((field, c)), Some(p)) if c.path == p => *field,
        _ => ca.as_ref().map_or("caCertificates", |(field, _)| *field),
    };
    Trust::load(ca.clone().map(|(_, p)| p), crl.clone().map(|(_, c)| c))
        .map_err(|e| (field_of(&e), e.to_string()))
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

impl ClientCertFiles {
    fn new(paths: CertPaths, key: Arc<CertifiedKey>) -> Self {
        let stamp = Self::stamp(&paths);
        ClientCertFiles {
            paths,
            current: Mutex::new((stamp, key)),
        }
    }

    fn stamp(paths: &CertPaths) -> Option<[FileStamp; 2]> {
        Some([stamp(&paths.cert)?, stamp(&paths.key)?])
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
    /// Against the cluster's CA bundle and revocation list, as they are now.
    Verify(Trust),
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
    fn new(tls: &OriginTls, chain: Chain) -> Self {
        ServerVerifier {
            chain,
            check_name: !tls.explicit_sni && tls.subject_alt_names.is_empty(),
            subject_alt_names: tls.subject_alt_names.clone(),
        }
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
            Chain::Verify(trust) => trust.current(),
            Chain::Skip => return Ok(ServerCertVerified::assertion()),
        };
        // No trust anchor at all (no system bundle): every chain is from an unknown issuer.
        let chain = chain.ok_or(Error::InvalidCertificate(CertificateError::UnknownIssuer))?;
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
