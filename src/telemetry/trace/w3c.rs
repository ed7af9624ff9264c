//! W3C Trace Context: parsing `traceparent` and `tracestate` (strictly, as the spec asks).

use http::HeaderMap;

use super::{hex_id, TraceParent, TRACESTATE, TRACESTATE_MAX_MEMBERS};

/// Parses a W3C `traceparent` (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`). Later
/// versions are read as version 00, as the spec asks; version `ff` and any deviation are
/// malformed (`None`).
pub fn parse_traceparent(v: &str) -> Option<TraceParent> {
    let b = v.as_bytes();
    if !v.is_ascii() || b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let version = u8::try_from(hex_or_zero(&v[0..2])?).ok()?;
    match version {
        0xff => return None,
        0 if b.len() != 55 => return None,
        _ if b.len() > 55 && b[55] != b'-' => return None,
        _ => {}
    }
    let trace_id = hex_id(&v[3..35], 32)?;
    let parent_id = hex_id(&v[36..52], 16)? as u64;
    let flags = hex_or_zero(&v[53..55])?;
    Some(TraceParent {
        trace_id,
        parent_id,
        sampled: flags & 1 == 1,
    })
}

/// Lowercase hex, zero allowed.
fn hex_or_zero(s: &str) -> Option<u128> {
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

/// Every `tracestate` header, joined by `,`, if each list member is `key=value` as the W3C spec
/// writes them (at most 32). A malformed `tracestate` is dropped; the `traceparent` stays.
pub fn parse_tracestate(headers: &HeaderMap) -> Option<String> {
    let mut parts = Vec::new();
    for v in headers.get_all(&TRACESTATE) {
        parts.push(v.to_str().ok()?);
    }
    if parts.is_empty() {
        return None;
    }
    let joined = parts.join(",");
    let members = joined
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .filter(|m| !m.is_empty());
    let mut n = 0;
    for m in members {
        n += 1;
        if n > TRACESTATE_MAX_MEMBERS || !tracestate_member(m) {
            return None;
        }
    }
    (n > 0).then_some(joined)
}

/// `key=value`: a key of `[a-z0-9_*/-]` (with one `@` for `tenant@vendor`) starting with a letter
/// or digit, a value of printable ASCII without `,` or `=` that does not end in a space.
fn tracestate_member(m: &str) -> bool {
    let Some((key, value)) = m.split_once('=') else {
        return false;
    };
    let key_ok = !key.is_empty()
        && key.len() <= 256
        && key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && key.bytes().filter(|b| *b == b'@').count() <= 1
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/@".contains(&b));
    let value_ok = !value.is_empty()
        && value.len() <= 256
        && !value.ends_with(' ')
        && value
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=');
    key_ok && value_ok
}
