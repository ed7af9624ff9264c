//! The certificates being served, one slot per file set, kept across config reloads (as upstream
//! state is) and rotated in place: `refresh` re-reads every slot's files and swaps in what
//! changed and loads; a broken new pair is refused (logged, counted) and the old one keeps
//! serving. A client CA slot holds the bundle and the server's revocation list together: a
//! broken bundle or list is refused the same way. Handshakes read a slot through one `ArcSwap`
//! load: no lock on the handshake path.
//! May not touch: the snapshot (it holds slots), watching (`watch`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::sync::Mutex;

use crate::compile::tls::ServerTls;

use super::material::{
    builder_error, load_ca, load_cert, load_crls, CertPaths, CrlPath, LoadError, ServedCert,
};

/// Every slot in use, the credentials folder, and the session ticket keys.
pub struct Credentials {
    dir: Option<PathBuf>,
    slots: Mutex<Slots>,
    /// Bumped when a slot is added: the watcher watches its folder.
    added: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct Slots {
    certs: HashMap<CertPaths, Arc<CertSlot>>,
    cas: HashMap<CaFiles, Arc<CaSlot>>,
    /// Per TLS policy: a policy change (say SIMPLE to MUTUAL) gets new keys, so tickets issued
    /// under the old policy cannot resume under the new one.
    ticketers: HashMap<u64, Arc<dyn ProducesTickets>>,
}

/// A server certificate: what new handshakes get.
#[derive(Debug)]
pub struct CertSlot {
    pub paths: CertPaths,
    current: ArcSwapOption<ServedCert>,
    /// The last refusal, logged once (the periodic refresh would repeat it).
    last_error: ArcSwapOption<String>,
}

/// The files of a client CA slot: the bundle, and the revocation list if the server has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CaFiles {
    pub ca: PathBuf,
    pub crl: Option<CrlPath>,
}

impl CaFiles {
    /// Which of the two fields (`ca_field`, `crl_field`) an error loading these files is about.
    pub fn field_of(
        &self,
        e: &LoadError,
        ca_field: &'static str,
        crl_field: &'static str,
    ) -> &'static str {
        match (e.path(), &self.crl) {
            (Some(p), Some(crl)) if p == crl.path => crl_field,
            _ => ca_field,
        }
    }
}

/// A client CA bundle (and revocation list), with the two verifiers made of it.
#[derive(Debug)]
pub struct CaSlot {
    pub files: CaFiles,
    current: ArcSwapOption<CaVerifiers>,
    /// The last refusal, logged once (see `CertSlot`).
    last_error: ArcSwapOption<String>,
}

#[derive(Debug)]
pub struct CaVerifiers {
    pub required: Arc<dyn ClientCertVerifier>,
    pub optional: Arc<dyn ClientCertVerifier>,
    digest: Vec<u8>,
}

// === impl Credentials ===

impl Credentials {
    /// `dir`: `--credentials-dir`, where `credentialName`s are folders.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Credentials {
            dir,
            slots: Mutex::new(Slots::default()),
            added: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Wakes when slots are added.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.added.subscribe()
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The slot of `paths`, loading it if new. A slot whose files do not load yet is still
    /// returned (handshakes fail until a refresh loads it); the error says why.
    pub async fn cert(&self, paths: &CertPaths) -> (Arc<CertSlot>, Option<LoadError>) {
        let mut slots = self.slots.lock().await;
        if let Some(slot) = slots.certs.get(paths) {
            return (slot.clone(), None);
        }
        let (current, err) = match load_cert(paths) {
            Ok(c) => (Some(Arc::new(c)), None),
            Err(e) => (None, Some(e)),
        };
        let slot = Arc::new(CertSlot {
            paths: paths.clone(),
            last_error: ArcSwapOption::new(err.as_ref().map(|e| Arc::new(e.to_string()))),
            current: ArcSwapOption::new(current),
        });
        slots.certs.insert(paths.clone(), slot.clone());
        self.added.send_modify(|n| *n += 1);
        (slot, err)
    }

    /// The slot of a CA bundle and revocation list, loading it if new (see `cert`).
    pub async fn ca(&self, files: &CaFiles) -> (Arc<CaSlot>, Option<LoadError>) {
        let mut slots = self.slots.lock().await;
        if let Some(slot) = slots.cas.get(files) {
            return (slot.clone(), None);
        }
        let (current, err) = match verifiers(files) {
            Ok(v) => (Some(Arc::new(v)), None),
            Err(e) => (None, Some(e)),
        };
        let slot = Arc::new(CaSlot {
            files: files.clone(),
            current: ArcSwapOption::new(current),
            last_error: ArcSwapOption::new(err.as_ref().map(|e| Arc::new(e.to_string()))),
        });
        slots.cas.insert(files.clone(), slot.clone());
        self.added.send_modify(|n| *n += 1);
        (slot, err)
    }

    /// Session ticket keys for a TLS policy (rotated every 6 hours by rustls).
    pub async fn ticketer(&self, policy: &ServerTls) -> Option<Arc<dyn ProducesTickets>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        policy.hash(&mut h);
        let key = h.finish();
        let mut slots = self.slots.lock().await;
        if let Some(t) = slots.ticketers.get(&key) {
            return Some(t.clone());
        }
        let t = rustls::crypto::ring::Ticketer::new().ok()?;
        slots.ticketers.insert(key, t.clone());
        Some(t)
    }

    /// Drops slots no snapshot uses any more (only this registry holds them).
    pub async fn prune(&self) {
        let mut slots = self.slots.lock().await;
        slots.certs.retain(|_, s| Arc::strong_count(s) > 1);
        slots.cas.retain(|_, s| Arc::strong_count(s) > 1);
    }

    /// Every file the slots read (what `watch` watches).
    pub async fn files(&self) -> Vec<PathBuf> {
        let slots = self.slots.lock().await;
        let certs = slots
            .certs
            .keys()
            .flat_map(|p| [p.cert.clone(), p.key.clone()]);
        let cas = slots.cas.keys().flat_map(|f| {
            std::iter::once(f.ca.clone()).chain(f.crl.iter().map(|c| c.path.clone()))
        });
        certs.chain(cas).collect()
    }

    /// Re-reads every slot; swaps in what changed and loads, refuses what does not (the
    /// previous certificate keeps serving). Returns how many slots changed.
    pub async fn refresh(&self) -> usize {
        let (certs, cas): (Vec<_>, Vec<_>) = {
            let slots = self.slots.lock().await;
            (
                slots.certs.values().cloned().collect(),
                slots.cas.values().cloned().collect(),
            )
        };
        let mut changed = 0;
        for slot in certs {
            changed += usize::from(slot.refresh());
        }
        for slot in cas {
            changed += usize::from(slot.refresh());
        }
        changed
    }
}

// === impl CertSlot ===

impl CertSlot {
    /// What handshakes present now (`None` until the files first load).
    pub fn current(&self) -> Option<Arc<ServedCert>> {
        self.current.load_full()
    }

    fn refresh(&self) -> bool {
        let old = self.current.load_full();
        match load_cert(&self.paths) {
            Ok(new) if old.as_ref().is_some_and(|o| o.digest == new.digest) => false,
            Ok(new) => {
                self.last_error.store(None);
                tracing::info!(cert = %self.paths.cert.display(), key = %self.paths.key.display(), "certificate reloaded; new handshakes use it");
                metrics::counter!("meshgate_tls_certificate_reloads_total", "result" => "success")
                    .increment(1);
                self.current.store(Some(Arc::new(new)));
                true
            }
            // Mid-rotation (one file written, not the other) looks the same as a broken pair:
            // refused now, loaded by the refresh after the second write.
            Err(e) if !self.first_report(&e) => false,
            Err(e) if old.is_some() => {
                tracing::error!(
                    "certificate rotation refused: {e}; the previous certificate keeps serving"
                );
                metrics::counter!("meshgate_tls_certificate_reloads_total", "result" => "refused")
                    .increment(1);
                false
            }
            Err(e) => {
                tracing::warn!("certificate still not loadable: {e}; its server's handshakes fail");
                false
            }
        }
    }
}

impl CertSlot {
    fn first_report(&self, e: &LoadError) -> bool {
        first_report(&self.last_error, e)
    }
}

/// Whether `e` differs from the last refusal (and remembers it).
fn first_report(last: &ArcSwapOption<String>, e: &LoadError) -> bool {
    let text = e.to_string();
    if last.load().as_deref() == Some(&text) {
        return false;
    }
    last.store(Some(Arc::new(text)));
    true
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load().as_ref().map(|c| c.key.clone())
    }
}

// === impl CaSlot ===

impl CaSlot {
    /// The verifiers of the bundle now (`None` until it first loads).
    pub fn current(&self) -> Option<Arc<CaVerifiers>> {
        self.current.load_full()
    }

    fn refresh(&self) -> bool {
        let old = self.current.load_full();
        match verifiers(&self.files) {
            Ok(new) if old.as_ref().is_some_and(|o| o.digest == new.digest) => false,
            Ok(new) => {
                self.last_error.store(None);
                match &self.files.crl {
                    None => {
                        tracing::info!(ca = %self.files.ca.display(), "client CA bundle reloaded")
                    }
                    Some(c) => {
                        tracing::info!(ca = %self.files.ca.display(), crl = %c.path.display(), "client CA bundle and revocation list reloaded")
                    }
                }
                self.current.store(Some(Arc::new(new)));
                true
            }
            Err(e) if !first_report(&self.last_error, &e) => false,
            Err(e) if old.is_some() => {
                tracing::error!(
                    "client CA rotation refused: {e}; the previous bundle and revocation list keep verifying"
                );
                false
            }
            Err(e) => {
                tracing::warn!("client CA still not loadable: {e}; its server's handshakes fail");
                false
            }
        }
    }
}

/// The verifiers of a bundle and list. With a list, every certificate of a client's chain below
/// the trust anchor must have its revocation status known (a list from its issuer), as Envoy
/// requires when a CRL is configured; an expired list still applies.
pub(super) fn verifiers(files: &CaFiles) -> Result<CaVerifiers, LoadError> {
    let (roots, ca_digest) = load_ca(&files.ca)?;
    let (crls, crl_digest) = match &files.crl {
        Some(c) => load_crls(c)?,
        None => Default::default(),
    };
    let digest = super::material::sha256(&[&ca_digest, &crl_digest]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let build = |optional: bool| {
        let b = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .with_crls(crls.iter().cloned());
        let b = if optional {
            b.allow_unauthenticated()
        } else {
            b
        };
        b.build()
            .map_err(|e| builder_error(e, &files.ca, files.crl.as_ref()))
    };
    Ok(CaVerifiers {
        required: build(false)?,
        optional: build(true)?,
        digest,
    })
}
