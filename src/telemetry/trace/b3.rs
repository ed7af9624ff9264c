//! B3 propagation: parsing the single `b3` header and the `x-b3-*` multi headers.

use http::HeaderMap;

use super::{hex_id, single, B3Context, Sampling};
use super::{X_B3_FLAGS, X_B3_PARENTSPANID, X_B3_SAMPLED, X_B3_SPANID, X_B3_TRACEID};

fn parse_sampling(s: &str) -> Option<Sampling> {
    match s {
        "0" => Some(Sampling::Deny),
        "1" => Some(Sampling::Accept),
        "d" => Some(Sampling::Debug),
        _ => None,
    }
}

/// Parses a B3 single header: `{traceid}-{spanid}[-{sampling}[-{parentspanid}]]`, or a sampling
/// decision alone (`0`, `1`, `d`). Trace ids are 16 or 32 lowercase hex digits.
pub fn parse_b3_single(v: &str) -> Option<B3Context> {
    if !v.is_ascii() {
        return None;
    }
    if let Some(sampling) = parse_sampling(v) {
        return Some(B3Context {
            ids: None,
            sampling: Some(sampling),
        });
    }
    let mut parts = v.split('-');
    let trace = b3_trace_id(parts.next()?)?;
    let span = hex_id(parts.next()?, 16)? as u64;
    let sampling = match parts.next() {
        Some(s) => Some(parse_sampling(s)?),
        None => None,
    };
    if let Some(parent) = parts.next() {
        hex_id(parent, 16)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(B3Context {
        ids: Some((trace.0, trace.1, span)),
        sampling,
    })
}

/// A B3 trace id: 32 or 16 lowercase hex digits. Returns the id and whether it was 64-bit.
fn b3_trace_id(s: &str) -> Option<(u128, bool)> {
    match s.len() {
        32 => Some((hex_id(s, 32)?, false)),
        16 => Some((hex_id(s, 16)?, true)),
        _ => None,
    }
}

/// Parses the B3 multi headers. `x-b3-traceid` and `x-b3-spanid` come together or not at all; a
/// malformed id (or parent id) makes the whole context malformed. A malformed `x-b3-sampled` or
/// `x-b3-flags` is as absent (the decision is then the gateway's).
pub fn parse_b3_multi(headers: &HeaderMap) -> Option<B3Context> {
    let trace = headers.get(&X_B3_TRACEID);
    let span = headers.get(&X_B3_SPANID);
    let ids = match (trace, span) {
        (None, None) => None,
        (Some(_), Some(_)) => {
            let trace = b3_trace_id(single(headers, &X_B3_TRACEID)?)?;
            let span = hex_id(single(headers, &X_B3_SPANID)?, 16)? as u64;
            Some((trace.0, trace.1, span))
        }
        _ => return None,
    };
    if headers.contains_key(&X_B3_PARENTSPANID) {
        hex_id(single(headers, &X_B3_PARENTSPANID)?, 16)?;
    }
    let debug = single(headers, &X_B3_FLAGS) == Some("1");
    // Old tracers sent `true`/`false`; the B3 spec asks receivers to accept them.
    let sampled = match single(headers, &X_B3_SAMPLED) {
        Some("1" | "true") => Some(Sampling::Accept),
        Some("0" | "false") => Some(Sampling::Deny),
        _ => None,
    };
    let sampling = if debug {
        Some(Sampling::Debug)
    } else {
        sampled
    };
    Some(B3Context { ids, sampling })
}
