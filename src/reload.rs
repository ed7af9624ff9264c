//! Watching the config path: any change (in-place write, rename-over, delete + create, a
//! Kubernetes ConfigMap `..data` symlink swap) triggers one reload after a quiet period.
//! May not touch: the snapshot itself; it only calls `Gateway::reload`, which keeps the last good
//! config when the new one is bad.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Gateway;

/// Quiet period after the last file event before reloading: one reload per burst (an editor's
/// save or a ConfigMap update is several events within a few milliseconds). Default is 50 ms.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(50);

/// Watches until dropped.
pub struct Watcher {
    _watcher: notify::RecommendedWatcher,
    task: JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `path` (a directory recursively; a file through its parent directory, so that
/// rename-over saves are seen) and reloads `gateway` after each burst of changes.
///
/// # Errors
/// When the OS refuses the watch (path missing, inotify limits).
pub fn watch(
    gateway: Arc<Gateway>,
    path: &Path,
    debounce: Duration,
) -> Result<Watcher, notify::Error> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            // Reading the files during a reload produces access events; they are not changes.
            Ok(e) if matches!(e.kind, EventKind::Access(_)) => {}
            Ok(_) => {
                let _ = tx.send(());
            }
            Err(e) => tracing::warn!(error = %e, "config watch error"),
        })?;
    let (target, mode) = watch_target(path);
    watcher.watch(&target, mode)?;
    tracing::info!(path = %target.display(), "watching config for changes");
    let task = tokio::spawn(debounce_loop(gateway, rx, debounce));
    Ok(Watcher {
        _watcher: watcher,
        task,
    })
}

fn watch_target(path: &Path) -> (PathBuf, RecursiveMode) {
    if path.is_dir() {
        (path.to_path_buf(), RecursiveMode::Recursive)
    } else {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (parent.to_path_buf(), RecursiveMode::NonRecursive)
    }
}

async fn debounce_loop(
    gateway: Arc<Gateway>,
    mut rx: mpsc::UnboundedReceiver<()>,
    debounce: Duration,
) {
    while rx.recv().await.is_some() {
        loop {
            match tokio::time::timeout(debounce, rx.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_quiet) => break,
            }
        }
        // Errors are logged and counted inside `reload`.
        let _ = gateway.reload().await;
    }
}
