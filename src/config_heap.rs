//! Where the config pipeline's memory comes from.
//!
//! A reload builds the new config while the old one is still served. Allocated the usual way,
//! the new config's blocks come off the allocator's free lists, which by then hold the blocks of
//! the config before: scattered over tens of megabytes, long out of the cache, so that nearly
//! every allocation misses it. One thread, 10,000 routes: `load_path` took 65 ms inside a reload
//! against 44 ms alone, and load + compile 120 ms against 92 (`benches/RESULTS.md`,
//! "2026-12-05 (third session)").
//!
//! The binary registers a [`Hook`] (`set`) that runs a piece of config work with a fresh heap as
//! the calling thread's default: mimalloc's `mi_heap_new` + `mi_heap_set_default`, then
//! `mi_heap_delete`, which hands the blocks still in use (the new config) to the thread's own
//! heap. A fresh heap is served from free pages only, in address order. Without a hook (unit
//! tests, the `system-allocator` build), [`run`] runs the work as it is.
//!
//! Used by `Gateway::reload` around load + admit, and by `par` around each worker thread's share.

use std::sync::OnceLock;

/// Runs the work it is given with the calling thread's allocations served from fresh memory.
/// It must run the work exactly once, and restore the thread's heap even if the work panics.
pub type Hook = fn(&mut dyn FnMut());

static HOOK: OnceLock<Hook> = OnceLock::new();

/// Registers the hook (the first call wins; the binary calls it once at start).
pub fn set(hook: Hook) {
    let _ = HOOK.set(hook);
}

/// `f()`, run through the hook if one is registered.
pub fn run<R>(f: impl FnOnce() -> R) -> R {
    let Some(hook) = HOOK.get() else {
        return f();
    };
    let mut f = Some(f);
    let mut out = None;
    hook(&mut || {
        if let Some(f) = f.take() {
            out = Some(f());
        }
    });
    match (out, f) {
        (Some(r), _) => r,
        // A hook that did not run the work: run here.
        (None, Some(f)) => f(),
        (None, None) => unreachable!("the work ran and its result was kept"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    fn counting(work: &mut dyn FnMut()) {
        CALLS.fetch_add(1, Ordering::SeqCst);
        work();
    }

    #[test]
    fn work_runs_once_through_the_hook() {
        set(counting);
        let before = CALLS.load(Ordering::SeqCst);
        let mut ran = 0;
        let out = run(|| {
            ran += 1;
            vec![1, 2, 3]
        });
        assert_eq!(out, [1, 2, 3]);
        assert_eq!(ran, 1);
        assert!(CALLS.load(Ordering::SeqCst) > before);
    }
}
