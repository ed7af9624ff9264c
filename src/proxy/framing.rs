//! HTTP/1 request framing followed on the wire, beside hyper. hyper settles a request that has both
//! `content-length` and `transfer-encoding` (chunked wins, the length is dropped) and one with a
//! repeated identical `content-length` without telling the service; Envoy rejects both with 400.
//! So the bytes hyper reads pass through a `Scanner` that finds each request head, notes such
//! framing, and skips the body (by length, or chunk by chunk) to the next head; the service asks
//! `Framing::next_request` whether the head it is handling was noted.
//! May not touch: the bytes (only read), routing. Where it cannot follow the stream (HTTP/2, a head
//! hyper rejects anyway, a tunnel), it stops looking: hyper's own handling then applies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::error::FramingError;

mod io;

pub use io::ScannedIo;

/// Longer heads are rejected by hyper (its buffer is about 76 KiB): stop looking.
const MAX_HEAD: usize = 80 * 1024;
/// A chunk-size line (with extensions) or trailer section longer than this: stop looking.
const MAX_LINE: usize = 16 * 1024;
const MAX_TRAILERS: usize = 64 * 1024;
const NONE: u64 = u64::MAX;

/// One connection's framing verdicts, shared by its `Scanner` (writer) and its service (reader).
#[derive(Debug)]
pub struct Framing {
    /// `index << 1 | kind` of the first request whose framing is ambiguous; `NONE` if none. The
    /// first is enough: that request is answered with `connection: close`.
    flagged: AtomicU64,
    /// Requests handed to the service so far.
    requests: AtomicU64,
}

/// Reads a connection's bytes as they arrive and records ambiguous framing in its `Framing`.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    /// The head being read (leading empty lines skipped).
    head: Vec<u8>,
    /// Non-CR bytes in the current line of the head.
    line: usize,
    /// Request heads seen so far.
    messages: u64,
    framing: Arc<Framing>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    /// Bytes of a content-length body still to come.
    Fixed(u64),
    /// A chunk-size line: the size so far, hex digits seen, past the digits (whitespace or
    /// extension), CR seen, line length.
    ChunkSize {
        size: u64,
        digits: u32,
        past: bool,
        cr: bool,
        len: usize,
    },
    ChunkData(u64),
    /// After a chunk's data: `\r` expected, then `\n`.
    ChunkCr,
    ChunkLf,
    /// After the last chunk: trailer lines until an empty one.
    Trailers {
        line: usize,
        total: usize,
    },
    /// Not following this connection any more.
    Off,
}

// === impl Framing ===

impl Framing {
    pub fn new() -> Arc<Framing> {
        Arc::new(Framing {
            flagged: AtomicU64::new(NONE),
            requests: AtomicU64::new(0),
        })
    }

    /// Called once per request the service gets, in order (HTTP/1 requests on one connection
    /// are sequential): the ambiguity of that request's framing, if any.
    pub fn next_request(&self) -> Option<FramingError> {
        let index = self.requests.fetch_add(1, Ordering::AcqRel);
        match self.flagged() {
            Some((i, kind)) if i == index => Some(kind),
            _ => None,
        }
    }

    /// The first request (by index on the connection) found ambiguous, and why.
    pub fn flagged(&self) -> Option<(u64, FramingError)> {
        let f = self.flagged.load(Ordering::Acquire);
        (f != NONE).then(|| {
            let kind = if f & 1 == 0 {
                FramingError::ContentLengthAndTransferEncoding
            } else {
                FramingError::DuplicateContentLength
            };
            (f >> 1, kind)
        })
    }

    fn flag(&self, index: u64, kind: FramingError) {
        let bit = match kind {
            FramingError::ContentLengthAndTransferEncoding => 0,
            FramingError::DuplicateContentLength => 1,
        };
        let value = index.saturating_mul(2) | bit;
        let _ = self
            .flagged
            .compare_exchange(NONE, value, Ordering::AcqRel, Ordering::Acquire);
    }
}

// === impl Scanner ===

impl Scanner {
    pub fn new(framing: Arc<Framing>) -> Scanner {
        Scanner {
            state: State::Head,
            head: Vec::new(),
            line: 0,
            messages: 0,
            framing,
        }
    }

    /// Has it stopped following the stream?
    pub fn is_off(&self) -> bool {
        self.state == State::Off
    }

    /// Shows the next bytes of the stream, in order, in pieces of any size.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Off => return,
                State::Fixed(n) | State::ChunkData(n) => {
                    let take = n.min(data.len() as u64);
                    data = data.get(take as usize..).unwrap_or_default();
                    let left = n - take;
                    self.state = match (self.state, left) {
                        (State::Fixed(_), 0) => State::Head,
                        (State::Fixed(_), _) => State::Fixed(left),
                        (_, 0) => State::ChunkCr,
                        (_, _) => State::ChunkData(left),
                    };
                }
                State::Head => {
                    let used = self.head_bytes(data);
                    data = data.get(used..).unwrap_or_default();
                }
                _ => {
                    let Some((&b, rest)) = data.split_first() else {
                        return;
                    };
                    data = rest;
                    self.byte(b);
                }
            }
        }
    }

    fn byte(&mut self, b: u8) {
        self.state = match self.state {
            State::ChunkSize {
                size,
                digits,
                past,
                cr,
                len,
            } => chunk_size_byte(b, size, digits, past, cr, len),
            State::ChunkCr if b == b'\r' => State::ChunkLf,
            State::ChunkLf if b == b'\n' => Self::chunk_start(),
            State::Trailers { line, total } => match b {
                b'\n' if line == 0 => State::Head,
                b'\n' => State::Trailers { line: 0, total },
                b'\r' => State::Trailers { line, total },
                _ if total >= MAX_TRAILERS => State::Off,
                _ => State::Trailers {
                    line: line + 1,
                    total: total + 1,
                },
            },
            State::Head
            | State::ChunkCr
            | State::ChunkLf
            | State::Fixed(_)
            | State::ChunkData(_)
            | State::Off => State::Off,
        };
    }

    fn chunk_start() -> State {
        State::ChunkSize {
            size: 0,
            digits: 0,
            past: false,
            cr: false,
            len: 0,
        }
    }

    /// Reads head bytes from the front of `data` up to the end of the head (the first empty
    /// line), leading empty lines skipped; returns how many it used. Lines are found with
    /// `memchr`, and a head that arrives whole is read where it lies, not copied.
    fn head_bytes(&mut self, data: &[u8]) -> usize {
        let skipped = if self.head.is_empty() {
            data.iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .unwrap_or(data.len())
        } else {
            0
        };
        let chunk = data.get(skipped..).unwrap_or_default();
        if chunk.is_empty() {
            return skipped;
        }
        // Whether the current line has a byte other than CR (an empty line ends the head).
        let mut line_has = self.line > 0;
        let mut line_start = 0;
        let mut end = None;
        // `is_plain`, worked out in the same pass when the head is in this chunk from its start.
        let mut plain = self.head.is_empty() && plain_start(chunk);
        for i in memchr::memchr_iter(b'\n', chunk) {
            let line = chunk.get(line_start..i).unwrap_or_default();
            if !line_has && line.iter().all(|&b| b == b'\r') {
                end = Some(i + 1);
                break;
            }
            plain = plain && plain_line(chunk, i + 1);
            line_has = false;
            line_start = i + 1;
        }
        let take = end.unwrap_or(chunk.len());
        if self.head.len() + take > MAX_HEAD {
            self.state = State::Off;
            return skipped + take;
        }
        let piece = chunk.get(..take).unwrap_or_default();
        if end.is_none() {
            let rest = chunk.get(line_start..).unwrap_or_default();
            self.line = usize::from(line_has || rest.iter().any(|&b| b != b'\r'));
            self.head.extend_from_slice(piece);
        } else if self.head.is_empty() {
            self.end_of_head(piece, plain);
        } else {
            let mut head = std::mem::take(&mut self.head);
            head.extend_from_slice(piece);
            let plain = is_plain(&head);
            self.end_of_head(&head, plain);
            head.clear();
            self.head = head;
        }
        skipped + take
    }

    /// A whole head was read: note its framing, then follow its body. `plain`: `is_plain(head)`.
    fn end_of_head(&mut self, head: &[u8], plain: bool) {
        self.line = 0;
        if plain {
            // No length, no transfer coding: no body, nothing ambiguous; the next head follows.
            self.messages += 1;
            self.state = State::Head;
            return;
        }
        self.state = match head_framing(head) {
            None => State::Off,
            Some(f) => {
                let index = self.messages;
                self.messages += 1;
                if let Some(kind) = f.ambiguous {
                    self.framing.flag(index, kind);
                    // That request is rejected and its connection closed.
                    State::Off
                } else {
                    f.next
                }
            }
        };
    }
}

/// Is `head` an ordinary request without a body: not `CONNECT` or HTTP/2's preface, and no line
/// that starts like `content-length` or `transfer-encoding` (in any case)? Then `head_framing`
/// need not parse it: it would find no body and nothing ambiguous (or hyper rejects the head).
/// Most requests are such; a look at the first bytes of each line instead of a second parse.
fn is_plain(head: &[u8]) -> bool {
    plain_start(head) && memchr::memchr_iter(b'\n', head).all(|i| plain_line(head, i + 1))
}

/// Not `CONNECT` or HTTP/2's preface.
fn plain_start(head: &[u8]) -> bool {
    !(head.starts_with(b"CONNECT") || head.starts_with(b"PRI"))
}

/// The line of `head` starting at `at` does not start like `content-length` or
/// `transfer-encoding` (a line of the head: the bytes compared are the line's, or end it).
fn plain_line(head: &[u8], at: usize) -> bool {
    let starts = |name: &[u8]| {
        head.get(at..at + name.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(name))
    };
    match head.get(at) {
        Some(b'c' | b'C') => !starts(b"content-length"),
        Some(b't' | b'T') => !starts(b"transfer-encoding"),
        _ => true,
    }
}

/// What one head says about its body.
struct HeadFraming {
    ambiguous: Option<FramingError>,
    next: State,
}

/// `None` when hyper would reject the head (or it is not HTTP/1), or it starts a tunnel.
fn head_framing(head: &[u8]) -> Option<HeadFraming> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => return None,
    }
    if req.method == Some("CONNECT") {
        return None;
    }
    let (mut te, mut chunked, mut lengths, mut length) = (false, false, 0u32, None);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
            // As hyper: the last coding of the last transfer-encoding line decides.
            chunked = std::str::from_utf8(h.value).is_ok_and(|v| {
                v.rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
            });
        } else if h.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            let n = digits(h.value)?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    let ambiguous = if te && lengths > 0 {
        Some(FramingError::ContentLengthAndTransferEncoding)
    } else if lengths > 1 {
        Some(FramingError::DuplicateContentLength)
    } else {
        None
    };
    let next = match (te, chunked, length) {
        (true, true, _) => Scanner::chunk_start(),
        (true, false, _) => State::Off,
        (false, _, Some(n)) if n > 0 => State::Fixed(n),
        (false, _, _) => State::Head,
    };
    Some(HeadFraming { ambiguous, next })
}

/// A content-length value as hyper reads it: ASCII digits only, no overflow.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// The next state after byte `b` of a chunk-size line.
fn chunk_size_byte(b: u8, size: u64, digits: u32, past: bool, cr: bool, len: usize) -> State {
    if len >= MAX_LINE {
        return State::Off;
    }
    let len = len + 1;
    if cr {
        return match (b, size) {
            (b'\n', 0) => State::Trailers { line: 0, total: 0 },
            (b'\n', n) => State::ChunkData(n),
            _ => State::Off,
        };
    }
    match b {
        b'\r' if digits > 0 => State::ChunkSize {
            size,
            digits,
            past,
            cr: true,
            len,
        },
        b'\n' => State::Off,
        _ if past => State::ChunkSize {
            size,
            digits,
            past,
            cr,
            len,
        },
        b' ' | b'\t' | b';' if digits > 0 => State::ChunkSize {
            size,
            digits,
            past: true,
            cr,
            len,
        },
        _ => match (b as char).to_digit(16) {
            Some(d) => match size
                .checked_mul(16)
                .and_then(|s| s.checked_add(u64::from(d)))
            {
                Some(size) => State::ChunkSize {
                    size,
                    digits: digits + 1,
                    past,
                    cr,
                    len,
                },
                None => State::Off,
            },
            None => State::Off,
        },
    }
}

#[cfg(test)]
mod tests;
