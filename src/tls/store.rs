//! The certificates being served, one slot per file set, kept across config reloads (as upstream
//! state is) and rotated in place: `refresh` re-reads every slot's files and swaps in what
//! changed and loads; a broken new pair is refused (logged, counted) and the old one keeps
//! serving. Handshakes read a slot through one `ArcSwap` load: no lock on the handshake path.
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

use super::material::{load_ca, load_cert, CertPaths, LoadError, ServedCert};

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
    cas: HashMap<PathBuf, Arc<CaSlot>>,
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

/// A client CA bundle, with the two verifiers made of it.
#[derive(Debug)]
pub struct CaSlot {
    pub path: PathBuf,
    current: ArcSwapOption<CaVerifiers>,
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

    /// The slot of a CA bundle, loading it if new (see `cert`).
    pub async fn ca(&self, path: &Path) -> (Arc<CaSlot>, Option<LoadError>) {
        let mut slots = self.slots.lock().await;
        if let Some(slot) = slots.cas.get(path) {
            return (slot.clone(), None);
        }
        let (current, err) = match verifiers(path) {
            Ok(v) => (Some(Arc::new(v)), None),
            Err(e) => (None, Some(e)),
        };
        let slot = Arc::new(CaSlot {
            path: path.into(),
            current: ArcSwapOption::new(current),
        });
        slots.cas.insert(path.into(), slot.clone());
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
        certs.chain(slots.cas.keys().cloned()).collect()
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
    /// Whether `e` differs from the last refusal (and remembers it).
    fn first_report(&self, e: &LoadError) -> bool {
        let text = e.to_string();
        if self.last_error.load().as_deref() == Some(&text) {
            return false;
        }
        self.last_error.store(Some(Arc::new(text)));
        true
    }
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
        match verifiers(&self.path) {
            Ok(new) if old.as_ref().is_some_and(|o| o.digest == new.digest) => false,
            Ok(new) => {
                tracing::info!(ca = %self.path.display(), "client CA bundle reloaded");
                self.current.store(Some(Arc::new(new)));
                true
            }
            Err(e) => {
                if old.is_some() {
                    tracing::error!(
                        "client CA rotation refused: {e}; the previous bundle keeps verifying"
                    );
                }
                false
            }
        }
    }
}

fn verifiers(path: &Path) -> Result<CaVerifiers, LoadError> {
    let (roots, digest) = load_ca(path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let build = |optional: bool| {
        let b = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
        let b = if optional {
            b.allow_unauthenticated()
        } else {
            b
        };
        b.build().map_err(|e| LoadError::BadCa {
            path: path.into(),
            why: e.to_string(),
        })
    };
    Ok(CaVerifiers {
        required: build(false)?,
        optional: build(true)?,
        digest,
    })
}
