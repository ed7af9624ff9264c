//! Spare read buffers of HTTP/1.1 upstream connections, a few per thread. An idle connection holds
//! no buffer (`conn.rs`); its buffer comes here when its exchange ends, and the next exchange on
//! any connection of the thread takes one instead of allocating 4 KiB (an allocation on
//! mimalloc's slow path and a `BytesMut` made anew: ~380 instructions per request, callgrind).
//! Memory is bounded: at most `KEEP` buffers per thread.
//! May not touch: what is in a buffer (only empty ones are kept).

use std::cell::RefCell;

use bytes::BytesMut;

/// Spare buffers kept per thread (4 KiB each, more after large responses): enough for the
/// exchanges that start together when a burst of requests is read (with 16, at 64 connections,
/// three exchanges in five still allocated), at most 512 KiB per thread.
const KEEP: usize = 128;

thread_local! {
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Keeps `buf` (empty, from a finished exchange) for the next exchange, if there is room. Its
/// memory may still be shared with the response's last bytes; a later `reserve` then reuses it
/// in place once they are gone, or allocates as it would have anyway.
pub fn put(buf: BytesMut) {
    if buf.capacity() == 0 || !buf.is_empty() {
        return;
    }
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < KEEP {
            s.push(buf);
        }
    });
}

/// A spare buffer, or an empty one (no memory) if there is none.
pub fn take() -> BytesMut {
    SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_put_back_is_taken_again_with_its_memory() {
        let mut buf = BytesMut::with_capacity(4096);
        buf.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
        let head = buf.split().freeze();
        let at = buf.as_ptr();
        put(buf);
        let again = take();
        assert_eq!(again.as_ptr(), at, "the same memory comes back");
        assert!(again.capacity() >= 4096 - head.len());
        // None left: a new, empty one.
        assert_eq!(take().capacity(), 0);
        // A buffer with bytes in it is not kept.
        let mut full = BytesMut::with_capacity(64);
        full.extend_from_slice(b"x");
        put(full);
        assert_eq!(take().capacity(), 0);
    }

    #[test]
    fn at_most_keep_buffers_are_kept() {
        for _ in 0..KEEP + 5 {
            put(BytesMut::with_capacity(16));
        }
        let mut n = 0;
        while take().capacity() > 0 {
            n += 1;
        }
        assert_eq!(n, KEEP);
    }
}
