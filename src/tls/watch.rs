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

/// Starts watching the files of `credentials`' slots, present and future.
pub fn watch(credentials: Arc<Credentials>) -> CredentialWatcher {
    CredentialWatcher {
        task: tokio::spawn(run(credentials)),
    }
}

async fn run(credentials: Arc<Credentials>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = match notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if let Ok(e) = e {
            if !matches!(e.kind, EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch certificate files; rotation is checked every {}s", POLL.as_secs());
            None
        }
    };
    let mut watched: HashSet<PathBuf> = HashSet::new();
    let mut slots = credentials.subscribe();
    let mut poll = tokio::time::interval(POLL);
    poll.tick().await;
    loop {
        if let Some(w) = watcher.as_mut() {
            let mut dirs: Vec<PathBuf> = credentials
                .files()
                .await
                .iter()
                .filter_map(|f| parent(f))
                .collect();
            dirs.extend(credentials.dir().map(Path::to_path_buf));
            for dir in dirs {
                if !watched.contains(&dir) && w.watch(&dir, RecursiveMode::NonRecursive).is_ok() {
                    watched.insert(dir);
                }
            }
        }
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
    }
}

fn parent(file: &Path) -> Option<PathBuf> {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
}
