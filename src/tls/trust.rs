//! What an upstream cluster trusts: the CA bundle (`caCertificates`, a credential's `ca.crt`, or
//! the system bundle) and revocation list (`caCrl`, a credential's `ca.crl`) made into a rustls
//! `WebPkiServerVerifier`, re-read when its files change: each new upstream handshake compares
//! the files' size, mtime and inode with the last load (two `stat`s; handshakes are rare,
//! connections are pooled), as the client certificate is (`origin`). A bundle or list that
//! does not load is logged once and the previous verifier is kept.
//! May not touch: name and SAN checks (`origin`), sockets.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use rustls::client::{VerifierBuilderError, WebPkiServerVerifier};
use rustls::RootCertStore;

use super::material::{builder_error, load_ca, load_crls, CrlPath, LoadError};

/// Where a system CA bundle is looked for when `caCertificates` is unset (`SSL_CERT_FILE` first).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// What tells that a file changed: size, inode, mtime.
pub(super) type FileStamp = (u64, u64, Option<SystemTime>);

/// The stamp of a file (`None`: it cannot be read).
pub(super) fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.len(), m.ino(), m.modified().ok()))
}

/// A chain verifier; `None` when there is no trust anchor at all (no system bundle): every
/// chain is then from an unknown issuer.
pub(super) type Verifier = Option<Arc<WebPkiServerVerifier>>;

/// The trust of one cluster.
#[derive(Debug)]
pub(super) enum Trust {
    /// The system bundle, no list: read once per process.
    System(Verifier),
    /// A bundle or list from files, re-read when they change.
    Files(TrustFiles),
}

#[derive(Debug)]
pub(super) struct TrustFiles {
    /// `None`: the system bundle.
    ca: Option<PathBuf>,
    crl: Option<CrlPath>,
    current: Mutex<([Option<FileStamp>; 2], Verifier)>,
}

// === impl Trust ===

impl Trust {
    /// Loads the bundle (`None`: the system one) and the list.
    ///
    /// # Errors
    /// A file that cannot be read or used (the error names it).
    pub(super) fn load(ca: Option<PathBuf>, crl: Option<CrlPath>) -> Result<Trust, LoadError> {
        if ca.is_none() && crl.is_none() {
            return verifier(None, None).map(Trust::System);
        }
        let stamps = stamps(ca.as_deref(), crl.as_ref());
        let v = verifier(ca.as_deref(), crl.as_ref())?;
        Ok(Trust::Files(TrustFiles {
            ca,
            crl,
            current: Mutex::new((stamps, v)),
        }))
    }

    /// The verifier for a new handshake (re-read first if the files changed).
    pub(super) fn current(&self) -> Verifier {
        match self {
            Trust::System(v) => v.clone(),
            Trust::Files(f) => f.current(),
        }
    }
}

impl TrustFiles {
    fn current(&self) -> Verifier {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = stamps(self.ca.as_deref(), self.crl.as_ref());
        if now != current.0 {
            current.0 = now;
            match verifier(self.ca.as_deref(), self.crl.as_ref()) {
                Ok(v) => {
                    tracing::info!(
                        ca = %self.ca.as_deref().map_or("system".into(), |p| p.display().to_string()),
                        crl = %self.crl.as_ref().map_or("none".into(), |c| c.path.display().to_string()),
                        "upstream CA bundle / revocation list reloaded; new upstream connections use it"
                    );
                    current.1 = v;
                }
                Err(e) => tracing::error!(
                    "upstream CA rotation refused: {e}; the previous bundle and revocation list stay in use"
                ),
            }
        }
        current.1.clone()
    }
}

fn stamps(ca: Option<&Path>, crl: Option<&CrlPath>) -> [Option<FileStamp>; 2] {
    [ca.and_then(stamp), crl.and_then(|c| stamp(&c.path))]
}

/// A verifier of `ca` (`None`: the system bundle) with the lists of `crl`. With a list, every
/// certificate of the server's chain below the trust anchor must have a known revocation status
/// (a list from its issuer), as Envoy requires when a CRL is configured.
fn verifier(ca: Option<&Path>, crl: Option<&CrlPath>) -> Result<Verifier, LoadError> {
    let roots = match ca {
        Some(path) => load_ca(path)?.0,
        None => system_roots(),
    };
    let crls = match crl {
        Some(c) => load_crls(c)?.0,
        None => Vec::new(),
    };
    let built = WebPkiServerVerifier::builder_with_provider(
        roots,
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .with_crls(crls)
    .build();
    match built {
        Ok(v) => Ok(Some(v)),
        // An empty store cannot build a verifier; one that knows no root fails every chain.
        Err(VerifierBuilderError::NoRootAnchors) => Ok(None),
        Err(e) => Err(builder_error(
            e,
            ca.unwrap_or(Path::new("system CA bundle")),
            crl,
        )),
    }
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
