//! Host names, DNS labels and references, with Istio's rules (short names, wildcards, `ns/name`).

/// RFC 1123 label: 1–63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Like `is_dns_label` but letters of either case (host names are case-insensitive).
fn is_host_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Why a host name is invalid, or `None` when it is fine. `*` and `*.suffix` are allowed;
/// a wildcard anywhere else is not. IP addresses are allowed.
pub fn host_error(host: &str) -> Option<&'static str> {
    if host == "*" {
        return None;
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    if host.is_empty() {
        return Some("empty host");
    }
    if host.len() > 255 {
        return Some("longer than 255 characters");
    }
    let rest = host.strip_prefix("*.").unwrap_or(host);
    if rest.contains('*') {
        return Some("a wildcard is only allowed as the whole first label (`*.example.com`)");
    }
    let rest = rest.strip_suffix('.').unwrap_or(rest);
    if !rest.split('.').all(is_host_label) {
        return Some(
            "each label must be 1-63 letters, digits or '-', not starting or ending with '-'",
        );
    }
    None
}

/// Istio short-name resolution: a name without a dot becomes `<name>.<ns>.svc.cluster.local`.
pub fn resolve_short_name(host: &str, namespace: &str) -> String {
    if host == "*" || host.contains('.') || host.parse::<std::net::IpAddr>().is_ok() {
        host.to_owned()
    } else {
        format!("{host}.{namespace}.svc.cluster.local")
    }
}

/// Resolves a `gateways` entry to `ns/name` (`None` for the reserved `mesh`).
pub fn resolve_gateway_ref(entry: &str, vs_namespace: &str) -> Option<String> {
    if entry == "mesh" {
        return None;
    }
    if let Some(name) = entry.strip_prefix("./") {
        return Some(format!("{vs_namespace}/{name}"));
    }
    if entry.contains('/') {
        return Some(entry.to_owned());
    }
    if let Some((name, rest)) = entry.split_once('.') {
        // Legacy FQDN form: name.ns[.svc.cluster.local]
        let ns = rest.split('.').next().unwrap_or(vs_namespace);
        return Some(format!("{ns}/{name}"));
    }
    Some(format!("{vs_namespace}/{entry}"))
}

/// `a` lies inside `b`: equal, or `b` is a wildcard whose suffix `a` ends with.
pub fn host_within(a: &str, b: &str) -> bool {
    if a == b || b == "*" {
        return true;
    }
    let Some(suffix) = b.strip_prefix('*') else {
        return false;
    };
    match a.strip_prefix('*') {
        // A wildcard is inside a shorter wildcard with a matching suffix.
        Some(a_suffix) => a_suffix.ends_with(suffix) && a_suffix.len() > suffix.len(),
        None => a.ends_with(suffix) && a.len() > suffix.len(),
    }
}

/// The more specific of two hosts when one contains the other (Istio's gateway host intersection).
pub fn intersect(server_host: &str, vs_host: &str) -> Option<String> {
    if host_within(vs_host, server_host) {
        Some(vs_host.to_owned())
    } else if host_within(server_host, vs_host) {
        Some(server_host.to_owned())
    } else {
        None
    }
}

/// A gateway server host `[ns/]dnsName` split into (namespace filter, host).
/// `None` namespace means any namespace (`*/` or no prefix).
pub fn split_server_host<'a>(host: &'a str, gateway_ns: &'a str) -> (Option<&'a str>, &'a str) {
    match host.split_once('/') {
        Some(("*", h)) => (None, h),
        Some((".", h)) => (Some(gateway_ns), h),
        Some((ns, h)) => (Some(ns), h),
        None => (None, host),
    }
}

/// Is a resource with this `exportTo` visible from namespace `to`?
pub fn exported_to(export_to: &[String], own_ns: &str, to: &str) -> bool {
    export_to.is_empty()
        || export_to.iter().any(|e| match e.as_str() {
            "*" => true,
            "." => own_ns == to,
            "~" => false,
            ns => ns == to,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersection_keeps_the_more_specific() {
        assert_eq!(
            intersect("*.example.com", "api.example.com").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            intersect("*.example.com", "*").as_deref(),
            Some("*.example.com")
        );
        assert_eq!(intersect("*.example.com", "example.com"), None);
        assert_eq!(intersect("*", "*").as_deref(), Some("*"));
        assert_eq!(intersect("*.com", "*.b.com").as_deref(), Some("*.b.com"));
    }

    #[test]
    fn short_names() {
        assert_eq!(
            resolve_short_name("reviews", "ns"),
            "reviews.ns.svc.cluster.local"
        );
        assert_eq!(resolve_short_name("reviews.prod", "ns"), "reviews.prod");
        assert_eq!(resolve_short_name("10.0.0.1", "ns"), "10.0.0.1");
    }

    #[test]
    fn gateway_refs() {
        assert_eq!(resolve_gateway_ref("gw", "ns").as_deref(), Some("ns/gw"));
        assert_eq!(
            resolve_gateway_ref("other/gw", "ns").as_deref(),
            Some("other/gw")
        );
        assert_eq!(resolve_gateway_ref("./gw", "ns").as_deref(), Some("ns/gw"));
        assert_eq!(
            resolve_gateway_ref("gw.other.svc.cluster.local", "ns").as_deref(),
            Some("other/gw")
        );
        assert_eq!(resolve_gateway_ref("mesh", "ns"), None);
    }

    #[test]
    fn host_validation() {
        assert!(host_error("*.example.com").is_none());
        assert!(host_error("a*.example.com").is_some());
        assert!(host_error("foo.*.com").is_some());
        assert!(host_error("bad_label.com").is_some());
        assert!(host_error("10.1.2.3").is_none());
    }
}
