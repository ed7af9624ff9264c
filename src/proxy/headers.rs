//! Header rules at the gateway edge, as an Istio ingress gateway applies them: hop-by-hop headers
//! dropped, `x-forwarded-*` and `x-request-id` set, internal `x-envoy-*` headers from clients removed.

use std::net::IpAddr;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};
use smallvec::SmallVec;

use crate::telemetry::text;

/// `x-envoy-*` headers a client may not set (the gateway treats every request as external).
const ENVOY_INTERNAL: &[&str] = &[
    "x-envoy-internal",
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-max-retries",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-upstream-stream-duration-ms",
    "x-envoy-attempt-count",
    "x-envoy-original-path",
    "x-envoy-external-address",
];

pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_ENVOY_EXTERNAL_ADDRESS: HeaderName =
    HeaderName::from_static("x-envoy-external-address");
pub const X_ENVOY_ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");
pub const X_ENVOY_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
pub const X_ENVOY_UPSTREAM_SERVICE_TIME: HeaderName =
    HeaderName::from_static("x-envoy-upstream-service-time");

/// Is this an HTTP/1.1 WebSocket upgrade request?
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    upgrade && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The hop-by-hop headers (never forwarded), in `hop_index`'s order.
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    HeaderName::from_static("http2-settings"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
];
/// `HOP_BY_HOP`'s index of `connection` and `te`, as bits.
const CONNECTION_BIT: u16 = 1 << 0;
const TE_BIT: u16 = 1 << 5;

/// `name`'s index in `HOP_BY_HOP`, if it is a hop-by-hop header. A match on the name's text: the
/// compiler switches on its length first, so most names cost one comparison.
fn hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "transfer-encoding" => 3,
        "upgrade" => 4,
        "te" => 5,
        "http2-settings" => 6,
        "proxy-authenticate" => 7,
        "proxy-authorization" => 8,
        "trailer" => 9,
        _ => return None,
    })
}

/// Is `name` a hop-by-hop header (never forwarded)?
fn is_hop_by_hop(name: &HeaderName) -> bool {
    hop_index(name).is_some()
}

/// Is `name` an `x-envoy-*` header a client may not set?
fn is_envoy_internal(s: &str) -> bool {
    s.starts_with("x-envoy-") && ENVOY_INTERNAL.contains(&s)
}

/// Removes every header `drop` selects. One pass over the names present (usually a handful),
/// no name parsing or hashing unless something is to be removed.
fn remove_where(headers: &mut HeaderMap, drop: impl Fn(&HeaderName) -> bool) {
    if !headers.keys().any(&drop) {
        return;
    }
    let doomed: Vec<HeaderName> = headers.keys().filter(|n| drop(n)).cloned().collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// Removes hop-by-hop headers and the headers `Connection` nominates. `te: trailers` survives.
/// One pass over the names present, then one removal per hop-by-hop name found; `Connection` is
/// read only when present (a response's `connection: keep-alive` costs one removal).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = hop_index(name) {
            present |= 1 << i;
        }
    }
    // Usual for requests: none at all.
    if present == 0 {
        return;
    }
    // Names `Connection` nominates besides the hop-by-hop ones removed below anyway (usually
    // none: `keep-alive` and `close` are all most messages carry), so usually no allocation.
    let mut nominated: Vec<HeaderName> = Vec::new();
    if present & CONNECTION_BIT != 0 {
        for v in headers.get_all(header::CONNECTION) {
            let Ok(v) = v.to_str() else { continue };
            for t in v.split(',').map(str::trim) {
                if t.is_empty()
                    || t.eq_ignore_ascii_case("close")
                    || t.eq_ignore_ascii_case("keep-alive")
                {
                    continue;
                }
                // `from_bytes` lowercases; a token that is no header name nominates nothing.
                if let Ok(name) = HeaderName::from_bytes(t.as_bytes()) {
                    if !is_hop_by_hop(&name) {
                        nominated.push(name);
                    }
                }
            }
        }
    }
    let te_trailers = present & TE_BIT != 0
        && headers
            .get(header::TE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            });
    for name in nominated {
        headers.remove(name);
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Moves every header value out of the buffer it was parsed in, into one small buffer of their
/// own. A value from hyper's parser is a slice of the upstream connection's 8 KiB read buffer and
/// keeps all of it alive; HTTP/2's HPACK encoder keeps the values it indexes in its dynamic table
/// for the downstream connection's lifetime, so each HTTP/2 connection pinned several of those
/// buffers (~68 KiB per connection under load, `benches/RESULTS.md`). One copy of a few hundred
/// bytes per response, for HTTP/2 downstreams only.
pub fn detach_values(headers: &mut HeaderMap) {
    let total: usize = headers.values().map(|v| v.len()).sum();
    let mut joined = bytes::BytesMut::with_capacity(total);
    move_values(headers, &mut joined);
}

/// An HTTP/1 request's URI and header values moved out of the downstream connection's read
/// buffer, into one small buffer of their own. hyper parses the head without copying, so they are
/// slices of its 8 KiB read buffer; while the request is in flight hyper reads on (to see an early
/// close) and, finding that buffer still shared, reserves a fresh 8 KiB one: two buffers per
/// active connection, and a new one touched for every request. Called from the service's `call`,
/// which hyper makes before that read, so hyper reuses its buffer in place
/// (`benches/RESULTS.md`, 2026-12-03 fourth session).
pub fn detach_request_head(uri: &mut http::Uri, headers: &mut HeaderMap) {
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    let values: usize = headers.values().map(|v| v.len()).sum();
    let mut joined = bytes::BytesMut::with_capacity(authority + path + values);
    if authority + path > 0 {
        let mut parts = uri.clone().into_parts();
        if let Some(a) = parts.authority.take() {
            joined.extend_from_slice(a.as_str().as_bytes());
            let own = joined.split().freeze();
            // The bytes of a valid authority: cannot fail; if it did, the old one stays.
            parts.authority = Some(http::uri::Authority::from_maybe_shared(own).unwrap_or(a));
        }
        if let Some(p) = parts.path_and_query.take() {
            joined.extend_from_slice(p.as_str().as_bytes());
            let own = joined.split().freeze();
            parts.path_and_query =
                Some(http::uri::PathAndQuery::from_maybe_shared(own).unwrap_or(p));
        }
        // The parts of a valid URI: this cannot fail; if it did, the old URI would stay.
        if let Ok(own) = http::Uri::from_parts(parts) {
            *uri = own;
        }
    }
    move_values(headers, &mut joined);
}

/// Copies the values into `joined` (room reserved by the caller) and points them at it.
fn move_values(headers: &mut HeaderMap, joined: &mut bytes::BytesMut) {
    for v in headers.values() {
        joined.extend_from_slice(v.as_bytes());
    }
    let joined = joined.split().freeze();
    let mut at = 0;
    for v in headers.values_mut() {
        let len = v.len();
        // The same bytes that were a valid value: this cannot fail; if it did, the old value
        // (and its buffer) would simply stay.
        if let Ok(mut own) = HeaderValue::from_maybe_shared(joined.slice(at..at + len)) {
            own.set_sensitive(v.is_sensitive());
            *v = own;
        }
        at += len;
    }
}

/// Headers the gateway sets that the head's map is known not to hold, sent after it
/// (`Outgoing::added`): the forwarding headers the client did not send, and the trace context.
/// Each would otherwise be a hashed insert into the map.
pub type Added = SmallVec<[(HeaderName, HeaderValue); 10]>;

/// Prepares downstream request headers for the upstream: hop-by-hop headers, internal `x-envoy-*`
/// headers and the client's `x-forwarded-client-cert` (SANITIZE_SET) go; `x-forwarded-for`,
/// `x-forwarded-proto`, `x-envoy-external-address` and `x-request-id` are set. Those the client
/// did not send (usually all) are put in `added`, not in the map.
pub fn prepare_request(headers: &mut HeaderMap, added: &mut Added, peer: IpAddr, websocket: bool) {
    remove_hop_by_hop(headers);
    if websocket {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    // One pass over the names: which forwarding headers the client sent, and whether any header
    // is to go.
    let (mut xff, mut proto, mut request_id, mut doomed) = (false, false, false, false);
    for name in headers.keys() {
        match name.as_str() {
            "x-forwarded-for" => xff = true,
            "x-forwarded-proto" => proto = true,
            "x-request-id" => request_id = true,
            s => doomed |= is_removed(s),
        }
    }
    if doomed {
        remove_where(headers, |n| is_removed(n.as_str()));
    }
    // One buffer for the values made here: the attempt's copy of the head clones them for free.
    let mut values = text::Values::with_capacity(96);
    let peer_str = text::ip_string(peer);
    let peer_value = values.value(peer_str.as_bytes());
    if xff {
        let v = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.is_empty() => {
                values.value(format!("{prev}, {peer_str}").as_bytes())
            }
            _ => peer_value.clone(),
        };
        match v {
            Some(v) => headers.insert(X_FORWARDED_FOR, v),
            None => headers.remove(&X_FORWARDED_FOR),
        };
    } else if let Some(v) = &peer_value {
        added.push((X_FORWARDED_FOR, v.clone()));
    }
    let http = HeaderValue::from_static("http");
    if proto {
        headers.insert(X_FORWARDED_PROTO, http);
    } else {
        added.push((X_FORWARDED_PROTO, http));
    }
    // The client's was removed (internal).
    if let Some(v) = peer_value {
        added.push((X_ENVOY_EXTERNAL_ADDRESS, v));
    }
    if !request_id {
        let id = uuid::Uuid::new_v4();
        let mut buf = uuid::Uuid::encode_buffer();
        let s = id.hyphenated().encode_lower(&mut buf);
        if let Some(v) = values.value(s.as_bytes()) {
            added.push((X_REQUEST_ID, v));
        }
    }
    // `x-envoy-attempt-count` is set per attempt (`Head::outgoing`).
}

/// Is a request header of this name removed at the edge: an internal `x-envoy-*` header, or the
/// client's `x-forwarded-client-cert` (this hop's is set, `Head::build`)?
fn is_removed(name: &str) -> bool {
    name == "x-forwarded-client-cert" || is_envoy_internal(name)
}

/// Sets `name` where it is: in `added` if there, else in `headers`.
pub fn set(headers: &mut HeaderMap, added: &mut Added, name: HeaderName, value: HeaderValue) {
    match added.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = value,
        None => {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request head parsed the way hyper does (URI and values sliced out of the read buffer)
    /// keeps its URI, values and sensitivity, and afterwards nothing points into that buffer: the
    /// buffer is unique again, so a reserve reuses it in place instead of allocating another.
    #[test]
    fn a_detached_request_head_leaves_the_read_buffer() {
        for (target, want_authority) in [
            ("/a/b?c=d&e", None),
            ("http://h.example:81/p?q", Some("h.example:81")),
            ("h.example:443", Some("h.example:443")),
            ("*", None),
        ] {
            let mut read = bytes::BytesMut::with_capacity(8192);
            read.extend_from_slice(format!("{target}\0gzip\0secret\0rest").as_bytes());
            let head = read.split_to(target.len() + 12).freeze();
            let mut uri = http::Uri::from_maybe_shared(head.slice(..target.len())).unwrap();
            let at = target.len() + 1;
            let mut h = HeaderMap::new();
            h.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_maybe_shared(head.slice(at..at + 4)).unwrap(),
            );
            let mut secret = HeaderValue::from_maybe_shared(head.slice(at + 5..at + 11)).unwrap();
            secret.set_sensitive(true);
            h.append(header::AUTHORIZATION, secret);
            drop(head);
            let before = uri.clone();
            detach_request_head(&mut uri, &mut h);
            assert_eq!(uri, before);
            assert_eq!(uri.authority().map(|a| a.as_str()), want_authority);
            assert_eq!(uri.to_string(), before.to_string());
            assert_eq!(h[header::ACCEPT_ENCODING], "gzip");
            assert_eq!(h[header::AUTHORIZATION], "secret");
            assert!(h[header::AUTHORIZATION].is_sensitive());
            drop(before);
            // Only `read` holds the buffer now: reserving what it already has is in place.
            let base = read.as_ptr() as usize - (target.len() + 12);
            read.clear();
            read.reserve(8192);
            assert_eq!(
                read.as_ptr() as usize,
                base,
                "{target}: the buffer is still shared"
            );
        }
    }

    /// The values keep their bytes, order and sensitivity, and no longer point into the buffer
    /// they were parsed in (what kept it alive in HPACK's table).
    #[test]
    fn detached_values_leave_the_parse_buffer() {
        let parsed = bytes::Bytes::from(b"text/plain\x00Thu, 01 Dec 2026\x00secret".to_vec());
        let range = parsed.as_ptr() as usize..parsed.as_ptr() as usize + parsed.len();
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_maybe_shared(parsed.slice(0..10)).unwrap(),
        );
        h.append(
            header::DATE,
            HeaderValue::from_maybe_shared(parsed.slice(11..27)).unwrap(),
        );
        let mut secret = HeaderValue::from_maybe_shared(parsed.slice(28..34)).unwrap();
        secret.set_sensitive(true);
        h.append(header::AUTHORIZATION, secret);
        h.append(header::DATE, HeaderValue::from_static("x"));
        detach_values(&mut h);
        let values: Vec<(&str, bool)> = h
            .values()
            .map(|v| (v.to_str().unwrap(), v.is_sensitive()))
            .collect();
        assert_eq!(
            values,
            [
                ("text/plain", false),
                ("Thu, 01 Dec 2026", false),
                ("x", false),
                ("secret", true)
            ]
        );
        for v in h.values() {
            assert!(
                !range.contains(&(v.as_bytes().as_ptr() as usize)),
                "{v:?} still shares the buffer"
            );
        }
    }

    #[test]
    fn hop_by_hop_and_nominated_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers, deflate"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none());
        assert!(h.get("keep-alive").is_none());
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert_eq!(h.get("x-keep").unwrap(), "1");
    }

    /// Every hop-by-hop name goes, whatever else is present; `te` without `trailers` goes whole.
    #[test]
    fn every_hop_by_hop_name_is_removed() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_index(name), Some(i), "{name}");
        }
        assert_eq!(HOP_BY_HOP[0], header::CONNECTION);
        assert_eq!(1u16 << 0, CONNECTION_BIT);
        assert_eq!(HOP_BY_HOP[5], header::TE);
        assert_eq!(1u16 << 5, TE_BIT);
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_static("gzip"));
            h.insert("x-keep", HeaderValue::from_static("1"));
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            remove_hop_by_hop(&mut h);
            let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
            left.sort_unstable();
            assert_eq!(left, ["content-type", "x-keep"], "{i}: {name}");
        }
        let mut all = HeaderMap::new();
        for name in &HOP_BY_HOP {
            all.append(name.clone(), HeaderValue::from_static("close"));
        }
        remove_hop_by_hop(&mut all);
        assert!(all.is_empty(), "{all:?}");
        // A name that is only like one is kept.
        let mut h = HeaderMap::new();
        h.insert("keep-alive2", HeaderValue::from_static("1"));
        h.insert("x-connection", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
    }

    /// Tokens are matched without regard to case; `close` nominates nothing; hop-by-hop names
    /// nominated go too; several `Connection` headers all count.
    #[test]
    fn nominated_names_ignore_case_and_repeat() {
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("Close, X-Other"));
        h.append("connection", HeaderValue::from_static("Upgrade , x-third"));
        for name in ["x-other", "upgrade", "x-third", "close-not", "x-keep"] {
            h.insert(name, HeaderValue::from_static("1"));
        }
        remove_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["close-not", "x-keep"]);
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-envoy-retry-on", HeaderValue::from_static("5xx"));
        h.insert(
            "x-forwarded-client-cert",
            HeaderValue::from_static("By=spoofed"),
        );
        let mut added = Added::new();
        prepare_request(&mut h, &mut added, "10.0.0.1".parse().unwrap(), false);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "1.2.3.4, 10.0.0.1");
        assert!(h.get("x-envoy-retry-on").is_none());
        assert!(h.get("x-forwarded-client-cert").is_none());
        // The headers the client did not send are added beside the map.
        let names: Vec<&str> = added.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-forwarded-proto",
                "x-envoy-external-address",
                "x-request-id"
            ]
        );
        assert_eq!(added[2].1.len(), 36);
        assert_eq!(added[1].1, "10.0.0.1");
    }

    /// A client's own forwarding headers are replaced in the map; nothing is added twice.
    #[test]
    fn forwarding_headers_the_client_sent_stay_in_the_map() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-request-id", HeaderValue::from_static("abc"));
        h.insert(
            "x-envoy-external-address",
            HeaderValue::from_static("6.6.6.6"),
        );
        let mut added = Added::new();
        prepare_request(&mut h, &mut added, "10.0.0.2".parse().unwrap(), false);
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(h.get("x-request-id").unwrap(), "abc");
        assert!(h.get("x-envoy-external-address").is_none());
        let names: Vec<&str> = added.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-forwarded-for", "x-envoy-external-address"]);
        set(
            &mut h,
            &mut added,
            X_FORWARDED_PROTO,
            HeaderValue::from_static("https"),
        );
        set(
            &mut h,
            &mut added,
            X_FORWARDED_FOR,
            HeaderValue::from_static("1.1.1.1"),
        );
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(added[0].1, "1.1.1.1");
        assert!(h.get("x-forwarded-for").is_none());
    }
}
