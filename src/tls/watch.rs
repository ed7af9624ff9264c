//! Watching certificate files: the folders holding every slot's files (so editors' renames and a
//! Kubernetes Secret volume's `..data` symlink swap are seen), a refresh of every slot after a
//! quiet period, and a slow periodic refresh that also picks up folders created later.
//! May not touch: what a refresh decides (`store` refuses broken pairs).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::store::Credentials;

/// Quiet period after the last file event before refreshing.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Refresh (and retry watches of missing folders) this often even without events.
const POLL: Duration = Duration::from_secs(10);

/// Watches until dropped.
pub struct CredentialWatcher {
    task: JoinHandle<()>,
}

impl Drop for CredentialWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching the files of `credentials`' slots, present and future. The folders of the
/// slots that exist now are watched before this returns, so no rotation right after start is
/// missed.
pub async fn watch(credentials: Arc<Credentials>) -> CredentialWatcher {
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if let Ok(e) = e {
            if !matches!(e.kind, EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    });
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch certificate files; rotation is checked every {}s", POLL.as_secs());
            None
        }
    };
    let mut folders = Folders {
        watcher,
        watched: HashSet::new(),
    };
    folders.sync(&credentials).await;
    CredentialWatcher {
        task: tokio::spawn(run(credentials, folders, rx)),
    }
}

/// The folders being watched.
struct Folders {
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
}

impl Folders {
    /// Watches the folder of every slot's files, and the credentials folder (a credential created
    /// later appears there). Folders that do not exist yet are retried next time.
    async fn sync(&mut self, credentials: &Credentials) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        let mut dirs: Vec<PathBuf> = credentials
            .files()
            .await
            .iter()
            .filter_map(|f| parent(f))
            .collect();
        dirs.extend(credentials.dir().map(Path::to_path_buf));
        for dir in dirs {
            if !self.watched.contains(&dir) && w.watch(&dir, RecursiveMode::NonRecursive).is_ok() {
                self.watched.insert(dir);
            }
        }
    }
}

async fn run(
    credentials: Arc<Credentials>,
    mut folders: Folders,
    mut rx: mpsc::UnboundedReceiver<()>,
) {
    let mut slots = credentials.subscribe();
    let mut poll = tokio::time::interval(POLL);
    poll.tick().await;
    loop {
        tokio::select! {
            got = rx.recv() => {
                if got.is_none() {
                    return;
                }
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
                credentials.refresh().await;
            }
            _ = poll.tick() => {
                credentials.refresh().await;
            }
            changed = slots.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        folders.sync(&credentials).await;
    }
}

fn parent(file: &Path) -> Option<PathBuf> {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
}
