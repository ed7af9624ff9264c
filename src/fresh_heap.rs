//! The binary's [`config_heap`](meshgate::config_heap) hook, a file of its own (not part of the
//! library, which forbids `unsafe`): `src/main.rs` registers it, and `benches/load_10k.rs`
//! includes this file (`#[path]`) to register the same one.

/// `config_heap`'s hook: runs config work with a fresh mimalloc heap as the thread's default, so
/// that a reload's new config is laid out on free pages, not on the old config's cold free lists
/// (`src/config_heap.rs`). The heap's blocks still in use then belong to the thread's own heap.
pub fn fresh_heap(work: &mut dyn FnMut()) {
    use libmimalloc_sys::{mi_heap_delete, mi_heap_new, mi_heap_set_default, mi_heap_t};
    /// Puts the thread's heap back, panic or not.
    struct Restore {
        heap: *mut mi_heap_t,
        previous: *mut mi_heap_t,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: `previous` was this thread's default heap and `heap` a heap this thread
            // made; once `previous` is the default again, `mi_heap_delete` hands the blocks
            // still allocated in `heap` to it (mimalloc's documented behaviour), so nothing
            // allocated by the work is freed here.
            unsafe {
                mi_heap_set_default(self.previous);
                mi_heap_delete(self.heap);
            }
        }
    }
    // First the blocks other threads freed back to this thread's heap (the config before last,
    // dropped on a blocking thread): pages that became empty are free pages again, for the new
    // heap to take, not new memory.
    // SAFETY: `mi_collect` has no preconditions (`src/main.rs`'s `collect_when_idle` calls it too).
    unsafe { libmimalloc_sys::mi_collect(false) };
    // SAFETY: `mi_heap_new` has no preconditions; a null heap (out of memory) is not used.
    let heap = unsafe { mi_heap_new() };
    if heap.is_null() {
        return work();
    }
    // SAFETY: `heap` is a live heap of this thread; the previous default is restored by `Restore`.
    let previous = unsafe { mi_heap_set_default(heap) };
    let _restore = Restore { heap, previous };
    work();
}
