//! Compiling `headers:` operations and Envoy `%VARIABLE%` templates in their values.

use super::field::fpath;
use http::{HeaderName, HeaderValue};

use crate::config::{self, ConflictKind, ErrorKind};
use crate::route::{HeaderOpList, HeaderOps, HeaderTemplate, Segment};

use super::Ctx;

/// Compiles `headers.request`/`headers.response` of the block at `parent` (its field path). A
/// `host`/`:authority` set or add on the request side is returned as a host rewrite (Istio turns
/// it into one).
pub(super) fn compile_headers(
    h: Option<&config::Headers>,
    parent: &str,
    cx: &mut Ctx<'_>,
) -> (HeaderOps, Option<HeaderValue>) {
    let Some(h) = h else {
        return (HeaderOps::default(), None);
    };
    // Formatted only when set: most routes and destinations have no `headers`.
    let field = &fpath!(parent, ".headers");
    let mut host_rewrite = None;
    let request = match &h.request {
        Some(ops) => ops_list(ops, &fpath!(field, ".request"), true, &mut host_rewrite, cx),
        None => HeaderOpList::default(),
    };
    let response = match &h.response {
        Some(ops) => ops_list(ops, &fpath!(field, ".response"), false, &mut None, cx),
        None => HeaderOpList::default(),
    };
    (HeaderOps { request, response }, host_rewrite)
}

fn ops_list(
    ops: &config::HeaderOperations,
    field: &str,
    request: bool,
    host_rewrite: &mut Option<HeaderValue>,
    cx: &mut Ctx<'_>,
) -> HeaderOpList {
    let mut out = HeaderOpList::default();
    // `set` before `add` so that a host set wins over a host add.
    for (op, map) in [("set", &ops.set), ("add", &ops.add)] {
        for (name, value) in map {
            let f = fpath!(field, ".", op, ".", name);
            let lname = name.to_ascii_lowercase();
            if request && (lname == "host" || lname == ":authority") {
                match HeaderValue::from_str(value) {
                    Ok(v) if host_rewrite.is_none() => *host_rewrite = Some(v),
                    Ok(_) => {}
                    Err(_) => cx.error(
                        &f,
                        invalid("header value", value, "not a valid header value"),
                    ),
                }
                continue;
            }
            let Some(hname) = header_name(name, &f, request, cx) else {
                continue;
            };
            let Some(template) = template(value, &f, cx) else {
                continue;
            };
            if op == "set" {
                out.set.push((hname, template));
            } else {
                out.add.push((hname, template));
            }
        }
    }
    for (i, name) in ops.remove.iter().enumerate() {
        let f = fpath!(field, ".remove[", i, "]");
        if name.eq_ignore_ascii_case("host") {
            cx.error(&f, invalid("header name", name, "`host` cannot be removed"));
            continue;
        }
        if let Some(h) = header_name(name, &f, request, cx) {
            out.remove.push(h);
        }
    }
    out
}

fn header_name(name: &str, field: &str, request: bool, cx: &mut Ctx<'_>) -> Option<HeaderName> {
    if name.is_empty() {
        cx.error(field, invalid("header name", name, "empty"));
        return None;
    }
    if name.starts_with(':') {
        cx.error(
            field,
            invalid("header name", name, "pseudo-headers cannot be changed"),
        );
        return None;
    }
    if !request && name.eq_ignore_ascii_case("host") {
        cx.error(
            field,
            invalid("header name", name, "`host` is not a response header"),
        );
        return None;
    }
    match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            cx.error(field, invalid("header name", name, "not an HTTP token"));
            None
        }
    }
}

/// Parses a header value with Envoy substitutions. Supported: `%DOWNSTREAM_REMOTE_ADDRESS%`,
/// `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`, `%REQ(name)%`, `%HOSTNAME%`, `%START_TIME%`;
/// `%%` is a literal `%`.
pub(super) fn template(value: &str, field: &str, cx: &mut Ctx<'_>) -> Option<HeaderTemplate> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        cx.error(
            field,
            invalid("header value", value, "control characters are not allowed"),
        );
        return None;
    }
    if !value.contains('%') {
        return match HeaderValue::from_str(value) {
            Ok(v) => Some(HeaderTemplate::Static(v)),
            Err(_) => {
                cx.error(
                    field,
                    invalid("header value", value, "not a valid header value"),
                );
                None
            }
        };
    }
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('%') {
        literal.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('%') {
            literal.push('%');
            rest = r;
            continue;
        }
        let Some(end) = rest.find('%') else {
            cx.error(
                field,
                invalid(
                    "header value",
                    value,
                    "lone `%` (write `%%` for a literal percent sign)",
                ),
            );
            return None;
        };
        let var = &rest[..end];
        rest = &rest[end + 1..];
        let seg = match var {
            "DOWNSTREAM_REMOTE_ADDRESS" => Segment::RemoteAddress,
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => Segment::RemoteAddressWithoutPort,
            "HOSTNAME" => Segment::Hostname,
            "START_TIME" => Segment::StartTime,
            v if v.starts_with("REQ(") && v.ends_with(')') => {
                match HeaderName::from_bytes(v[4..v.len() - 1].to_ascii_lowercase().as_bytes()) {
                    Ok(h) => Segment::Request(h),
                    Err(_) => {
                        cx.error(
                            field,
                            invalid("header value", value, "bad header name in %REQ(...)%"),
                        );
                        return None;
                    }
                }
            }
            other => {
                cx.error(
                    field,
                    invalid(
                        "header value",
                        value,
                        &fpath!("variable %", other, "% is not supported (supported: DOWNSTREAM_REMOTE_ADDRESS, DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT, REQ(header), HOSTNAME, START_TIME)"),
                    ),
                );
                return None;
            }
        };
        if !literal.is_empty() {
            segments.push(Segment::Literal(std::mem::take(&mut literal).into()));
        }
        segments.push(seg);
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal.into()));
    }
    Some(HeaderTemplate::Dynamic(segments))
}

pub(super) fn invalid(what: &'static str, value: &str, why: &str) -> ErrorKind {
    ErrorKind::Invalid {
        what,
        value: value.to_owned(),
        why: why.to_owned(),
    }
}

/// Two fields that cannot be set together.
pub(super) fn conflict(a: &'static str, b: &'static str) -> ErrorKind {
    ErrorKind::Conflict(ConflictKind { a, b })
}
