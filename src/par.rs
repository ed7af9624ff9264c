//! A parallel map for the config pipeline (reading files, compiling VirtualServices): scoped
//! threads that take items one at a time, results in input order. Nothing here outlives a call;
//! the request path never uses it.
//!
//! The thread count is what `std::thread::available_parallelism` reports (it honours a
//! container's CPU quota), at most [`MAX_THREADS`], and never more than there are items. The
//! calling thread works too, so one core means no thread is spawned at all.
//! `MESHGATE_CONFIG_THREADS` overrides it (`1`: everything on the calling thread).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Beyond this, more threads buy little for config sizes seen in practice.
pub const MAX_THREADS: usize = 8;

/// How many threads (the caller's included) a map over `items` items uses.
pub fn threads(items: usize) -> usize {
    static CONFIGURED: OnceLock<usize> = OnceLock::new();
    let configured = *CONFIGURED.get_or_init(|| {
        std::env::var("MESHGATE_CONFIG_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
                    .min(MAX_THREADS)
            })
    });
    configured.min(items).max(1)
}

/// `f` applied to every item, in the order of `items`. Each thread builds its own state with
/// `init` (a cache, say) and passes it to `f` for every item it takes.
///
/// A panic in `f` is raised again in the caller once the other threads have stopped, as a
/// sequential loop would raise it.
pub fn map_with<T, S, R>(
    items: &[T],
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R>
where
    T: Sync,
    S: Send,
    R: Send,
{
    map_with_states(items, init, f).0
}

/// [`map_with`], also returning each thread's state once its work is done (one per thread that
/// ran, the caller's first), for what the states gathered.
pub fn map_with_states<T, S, R>(
    items: &[T],
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> (Vec<R>, Vec<S>)
where
    T: Sync,
    S: Send,
    R: Send,
{
    let n = threads(items.len());
    if n <= 1 {
        let mut state = init();
        let out = items.iter().map(|item| f(&mut state, item)).collect();
        return (out, vec![state]);
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut state = init();
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return (done, state);
            };
            done.push((i, f(&mut state, item)));
        }
    };
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    let mut states = Vec::with_capacity(n);
    std::thread::scope(|scope| {
        // A new thread's heap takes over pages other threads left, with their cold free lists:
        // its share allocates from fresh memory instead (`config_heap`).
        let others: Vec<_> = (1..n)
            .map(|_| scope.spawn(|| crate::config_heap::run(work)))
            .collect();
        let mut parts = vec![work()];
        for handle in others {
            match handle.join() {
                Ok(part) => parts.push(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        for (done, state) in parts {
            for (i, r) in done {
                slots[i] = Some(r);
            }
            states.push(state);
        }
    });
    // Every index below `items.len()` was taken by exactly one thread (`fetch_add`), and every
    // thread that took one returned it (a panic was raised above).
    (slots.into_iter().flatten().collect(), states)
}

/// [`map_with`] without per-thread state.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    map_with(items, || (), |(), item| f(item))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_input_order() {
        let items: Vec<u64> = (0..1000).collect();
        let out = map(&items, |x| x * 3);
        assert_eq!(out.len(), 1000);
        assert!(out.iter().enumerate().all(|(i, v)| *v == i as u64 * 3));
        assert!(map(&[] as &[u8], |x| *x).is_empty());
    }

    #[test]
    fn each_thread_keeps_its_own_state() {
        // The state counts the items its thread took; all counts together are every item.
        let items: Vec<u32> = (0..500).collect();
        let out = map_with(
            &items,
            || 0usize,
            |seen, x| {
                *seen += 1;
                (*x, *seen)
            },
        );
        assert!(out.iter().enumerate().all(|(i, (x, _))| *x == i as u32));
        assert!(out.iter().all(|(_, seen)| (1..=500).contains(seen)));
    }

    #[test]
    fn the_states_come_back_with_what_they_gathered() {
        // Each state collects the items its thread took: together, every item exactly once.
        let items: Vec<u32> = (0..300).collect();
        let (out, states) = map_with_states(&items, Vec::new, |seen, x| {
            seen.push(*x);
            x + 1
        });
        assert_eq!(out, (1..=300).collect::<Vec<u32>>());
        assert!(!states.is_empty() && states.len() <= MAX_THREADS);
        let mut all: Vec<u32> = states.into_iter().flatten().collect();
        all.sort_unstable();
        assert_eq!(all, items);
    }

    #[test]
    fn a_panic_reaches_the_caller() {
        let items: Vec<u32> = (0..64).collect();
        let caught = std::panic::catch_unwind(|| {
            map(&items, |x| {
                assert!(*x != 40, "item 40");
                *x
            })
        });
        assert!(caught.is_err());
    }
}
