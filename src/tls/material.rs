//! Certificate material on disk: where a `ServerTls` source lives (file paths, or a credential's
//! folder under `--credentials-dir`, laid out as a Kubernetes Secret volume), and reading and
//! checking it (PEM chain, private key matching the leaf, CA bundle, certificate revocation
//! lists).
//! May not touch: rustls configs and the snapshot (`store` and `config` use what this returns).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use crate::compile::tls::{CaSource, CertSource, CrlSource};

/// The certificate and key files of one server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where a certificate revocation list is read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CrlPath {
    pub path: PathBuf,
    /// A credential's `ca.crl` (an optional Secret key): absent means no revocation list. A
    /// `caCrl` file is not optional: absent is an error.
    pub optional: bool,
}

/// A loaded revocation list file (its PEM `X509 CRL` blocks; rustls parses them when a
/// verifier is built).
pub type Crls = Vec<CertificateRevocationListDer<'static>>;

/// A loaded certificate: what handshakes present, and facts about it.
#[derive(Debug)]
pub struct ServedCert {
    pub key: Arc<CertifiedKey>,
    /// URI SANs of the leaf (the `By=` of `x-forwarded-client-cert`).
    pub uri_sans: Vec<String>,
    /// SHA-256 of the files' bytes: a rotation that changed nothing is not a reload.
    pub digest: Vec<u8>,
}

/// Why certificate material could not be used. Display is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("credentialName {name:?} needs --credentials-dir (a folder with one sub-folder per credential)")]
    NoCredentialsDir { name: String },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM certificate found", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: {why}", path.display())]
    BadPem { path: PathBuf, why: String },
    #[error("{}: no PEM private key found", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: unusable private key: {why}", path.display())]
    BadKey { path: PathBuf, why: String },
    #[error("{} does not match the certificate in {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: no usable CA certificate: {why}", path.display())]
    BadCa { path: PathBuf, why: String },
    #[error("{}: no PEM certificate revocation list (-----BEGIN X509 CRL-----) found", path.display())]
    NoCrl { path: PathBuf },
    #[error("{}: unusable certificate revocation list: {why}", path.display())]
    BadCrl { path: PathBuf, why: String },
    #[error("{why}")]
    Settings { why: String },
}

/// The certificate and key files of `source`: a credential's folder holds `tls.crt`/`tls.key`
/// (or `cert`/`key`, the other layout Istio reads).
///
/// # Errors
/// `NoCredentialsDir` for a credential without `--credentials-dir`.
pub fn cert_paths(source: &CertSource, dir: Option<&Path>) -> Result<CertPaths, LoadError> {
    match source {
        CertSource::Files { cert, key } => Ok(CertPaths {
            cert: cert.into(),
            key: key.into(),
        }),
        CertSource::Credential(name) => {
            let base = credential_dir(name, dir)?;
            Ok(CertPaths {
                cert: first_existing(&base, &["tls.crt", "cert"]),
                key: first_existing(&base, &["tls.key", "key"]),
            })
        }
    }
}

/// The CA bundle of `source`: `ca.crt` (or `cacert`) in the credential's folder, else in the
/// folder `<name>-cacert` (Istio's separate-Secret convention).
///
/// # Errors
/// `NoCredentialsDir` for a credential without `--credentials-dir`.
pub fn ca_path(source: &CaSource, dir: Option<&Path>) -> Result<PathBuf, LoadError> {
    match source {
        CaSource::File(path) => Ok(path.into()),
        CaSource::Credential(name) => {
            let own = credential_dir(name, dir)?;
            let names = ["ca.crt", "cacert"];
            let found = names.iter().map(|n| own.join(n)).find(|p| p.exists());
            let separate = credential_dir(&format!("{name}-cacert"), dir)?;
            Ok(found.unwrap_or_else(|| first_existing(&separate, &names)))
        }
    }
}

/// The revocation list of `source`: the `caCrl` file, or `ca.crl` in the credential's folder,
/// else in the folder `<name>-cacert` (optional: a credential without one has no list).
///
/// # Errors
/// `NoCredentialsDir` for a credential without `--credentials-dir`.
pub fn crl_path(source: &CrlSource, dir: Option<&Path>) -> Result<CrlPath, LoadError> {
    match source {
        CrlSource::File(path) => Ok(CrlPath {
            path: path.into(),
            optional: false,
        }),
        CrlSource::Credential(name) => {
            let own = credential_dir(name, dir)?.join("ca.crl");
            let separate = credential_dir(&format!("{name}-cacert"), dir)?.join("ca.crl");
            let path = if !own.exists() && separate.exists() {
                separate
            } else {
                own
            };
            Ok(CrlPath {
                path,
                optional: true,
            })
        }
    }
}

fn credential_dir(name: &str, dir: Option<&Path>) -> Result<PathBuf, LoadError> {
    let dir = dir.ok_or_else(|| LoadError::NoCredentialsDir { name: name.into() })?;
    Ok(dir.join(name))
}

/// The first of `names` that exists in `dir`, else the first name (so errors name it).
fn first_existing(dir: &Path, names: &[&str]) -> PathBuf {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
        .unwrap_or_else(|| dir.join(names[0]))
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.into(),
        source,
    })
}

/// SHA-256 of some bytes.
pub fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().to_vec()
}

/// Reads the PEM chain and key; the key must match the leaf.
///
/// # Errors
/// The file that could not be read or parsed, or a key that does not match.
pub fn load_cert(paths: &CertPaths) -> Result<ServedCert, LoadError> {
    let cert_pem = read(&paths.cert)?;
    let key_pem = read(&paths.key)?;
    let chain = certificates(&paths.cert, &cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => LoadError::NoKey {
            path: paths.key.clone(),
        },
        e => LoadError::BadPem {
            path: paths.key.clone(),
            why: e.to_string(),
        },
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => LoadError::Mismatch {
            cert: paths.cert.clone(),
            key: paths.key.clone(),
        },
        e => LoadError::BadKey {
            path: paths.key.clone(),
            why: e.to_string(),
        },
    })?;
    let uri_sans = certified
        .cert
        .first()
        .map(|leaf| super::x509::uri_sans(leaf.as_ref()))
        .unwrap_or_default();
    Ok(ServedCert {
        key: Arc::new(certified),
        uri_sans,
        digest: sha256(&[&cert_pem, &key_pem]),
    })
}

/// Reads a CA bundle (at least one certificate trust anchors can be made of).
///
/// # Errors
/// The file could not be read, holds no certificate, or none is a usable trust anchor.
pub fn load_ca(path: &Path) -> Result<(Arc<RootCertStore>, Vec<u8>), LoadError> {
    let pem = read(path)?;
    let certs = certificates(path, &pem)?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(LoadError::BadCa {
            path: path.into(),
            why: "no certificate in it parses as a trust anchor".into(),
        });
    }
    Ok((Arc::new(roots), sha256(&[&pem])))
}

impl LoadError {
    /// The file the error is about, if one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            LoadError::Io { path, .. }
            | LoadError::NoCertificate { path }
            | LoadError::BadPem { path, .. }
            | LoadError::NoKey { path }
            | LoadError::BadKey { path, .. }
            | LoadError::BadCa { path, .. }
            | LoadError::NoCrl { path }
            | LoadError::BadCrl { path, .. } => Some(path),
            LoadError::Mismatch { key, .. } => Some(key),
            LoadError::NoCredentialsDir { .. } | LoadError::Settings { .. } => None,
        }
    }
}

/// Reads a revocation list file (one or more PEM `X509 CRL` blocks) and the SHA-256 of its
/// bytes. An optional file that does not exist is an empty list.
///
/// # Errors
/// The file could not be read, or holds no CRL block, or a block is not valid base64.
pub fn load_crls(crl: &CrlPath) -> Result<(Crls, Vec<u8>), LoadError> {
    let path = &crl.path;
    let pem = match std::fs::read(path) {
        Err(e) if crl.optional && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Vec::new(), Vec::new()))
        }
        other => other.map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?,
    };
    let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Crls, _>>()
        .map_err(|e| LoadError::BadCrl {
            path: path.clone(),
            why: e.to_string(),
        })?;
    if crls.is_empty() {
        return Err(LoadError::NoCrl { path: path.clone() });
    }
    Ok((crls, sha256(&[&pem])))
}

/// What a verifier builder's error means for the files it was given.
pub fn builder_error(
    e: rustls::client::VerifierBuilderError,
    ca: &Path,
    crl: Option<&CrlPath>,
) -> LoadError {
    match (e, crl) {
        (rustls::client::VerifierBuilderError::InvalidCrl(why), Some(crl)) => LoadError::BadCrl {
            path: crl.path.clone(),
            why: format!("{why:?}"),
        },
        (e, _) => LoadError::BadCa {
            path: ca.into(),
            why: e.to_string(),
        },
    }
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LoadError::BadPem {
            path: path.into(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(LoadError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}
