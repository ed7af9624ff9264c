//! A route's `destination` (host, subset, port): validated and its short host name resolved
//! against the VirtualService's namespace. Shared by HTTP routes, mirrors and `tls:`/`tcp:` rules.

use super::field::fpath;
use crate::config::{self, ErrorKind};

use super::headers::invalid;
use super::matchers::port_number;
use super::names::{host_error, is_dns_label, resolve_short_name};
use super::Ctx;

/// Validates a `Destination` and resolves its short host name.
pub(super) fn destination(
    dest: &config::Destination,
    field: &str,
    namespace: &str,
    cx: &mut Ctx<'_>,
) -> Option<(String, Option<String>, Option<u16>)> {
    let Some(host) = dest.host.as_deref().filter(|h| !h.is_empty()) else {
        cx.error(&fpath!(field, ".host"), ErrorKind::Missing);
        return None;
    };
    if host == "*" {
        cx.error(
            &fpath!(field, ".host"),
            invalid("destination host", host, "wildcards are not allowed"),
        );
        return None;
    }
    if let Some(why) = host_error(host) {
        cx.error(&fpath!(field, ".host"), invalid("host", host, why));
        return None;
    }
    if host.starts_with("*.") {
        cx.error(
            &fpath!(field, ".host"),
            invalid("destination host", host, "wildcards are not allowed"),
        );
        return None;
    }
    if let Some(s) = &dest.subset {
        if !is_dns_label(s) {
            cx.error(
                &fpath!(field, ".subset"),
                invalid("subset name", s, "not a DNS-1123 label"),
            );
            return None;
        }
    }
    let port = match dest.port.as_ref().and_then(|p| p.number) {
        Some(p) => Some(port_number(p, &fpath!(field, ".port.number"), cx)?),
        None => None,
    };
    Some((
        resolve_short_name(&host.to_ascii_lowercase(), namespace),
        dest.subset.clone().filter(|s| !s.is_empty()),
        port,
    ))
}
