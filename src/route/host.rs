//! Virtual-host lookup by `Host` header: exact names in a hash map, `*.suffix` wildcards by
//! walking the name's dots (longest suffix first), then `*`. No allocation per lookup.

use std::collections::HashMap;

/// Host name → index of the virtual host in `RouteTable::vhosts`.
#[derive(Debug, Default)]
pub struct HostTable {
    exact: HashMap<Box<str>, usize>,
    /// Keyed by the suffix including its leading dot: `*.example.com` is stored as `.example.com`.
    suffix: HashMap<Box<str>, usize>,
    any: Option<usize>,
}

/// Which kind of entry a host lookup matched, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMatch {
    /// The exact name.
    Exact,
    /// The longest `*.suffix` wildcard.
    Suffix,
    /// `*`.
    Any,
}

/// Longest host name accepted for lookup; longer ones cannot be valid DNS names anyway.
const MAX_HOST: usize = 255;

impl HostTable {
    /// Adds a (lowercase) domain: `*`, `*.suffix` or an exact name.
    pub fn insert(&mut self, domain: &str, vhost: usize) {
        if domain == "*" {
            self.any = Some(vhost);
        } else if let Some(suffix) = domain.strip_prefix('*') {
            self.suffix.insert(suffix.into(), vhost);
        } else {
            self.exact.insert(domain.into(), vhost);
        }
    }

    /// Looks up a raw `Host` value: the port is stripped and the name compared case-insensitively.
    pub fn find(&self, authority: &str) -> Option<usize> {
        self.find_with_kind(authority).map(|(i, _)| i)
    }

    /// Like [`find`](Self::find), and says which kind of entry matched (for the explainer).
    pub fn find_with_kind(&self, authority: &str) -> Option<(usize, HostMatch)> {
        let host = strip_port(authority);
        let mut buf = [0u8; MAX_HOST];
        let any = self.any.map(|i| (i, HostMatch::Any));
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            if host.len() > MAX_HOST {
                return any;
            }
            let Some(out) = buf.get_mut(..host.len()) else {
                return any;
            };
            out.copy_from_slice(host.as_bytes());
            out.make_ascii_lowercase();
            // Lowercasing ASCII letters keeps the bytes valid UTF-8.
            std::str::from_utf8(out).ok()?
        } else {
            host
        };
        if let Some(&i) = self.exact.get(host) {
            return Some((i, HostMatch::Exact));
        }
        if !self.suffix.is_empty() {
            // A wildcard never matches an empty label: start after the first character.
            for (i, b) in host.bytes().enumerate().skip(1) {
                if b == b'.' {
                    if let Some(&v) = host.get(i..).and_then(|s| self.suffix.get(s)) {
                        return Some((v, HostMatch::Suffix));
                    }
                }
            }
        }
        any
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.suffix.len() + usize::from(self.any.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        };
    }
    match authority.rfind(':') {
        Some(i)
            if authority
                .get(i + 1..)
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())) =>
        {
            authority.get(..i).unwrap_or(authority)
        }
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> HostTable {
        let mut t = HostTable::default();
        t.insert("api.example.com", 0);
        t.insert("*.example.com", 1);
        t.insert("*.b.example.com", 2);
        t.insert("*", 3);
        t
    }

    #[test]
    fn exact_host_beats_wildcard() {
        assert_eq!(table().find("api.example.com"), Some(0));
    }

    #[test]
    fn longest_suffix_wins() {
        assert_eq!(table().find("a.b.example.com"), Some(2));
        assert_eq!(table().find("x.example.com"), Some(1));
    }

    #[test]
    fn port_is_ignored_and_case_folded() {
        assert_eq!(table().find("API.Example.COM:8080"), Some(0));
        assert_eq!(table().find("[::1]:80"), Some(3));
    }

    #[test]
    fn wildcard_does_not_match_bare_suffix() {
        let mut t = HostTable::default();
        t.insert("*.example.com", 1);
        assert_eq!(t.find("example.com"), None);
        assert_eq!(t.find(".example.com"), None);
    }

    #[test]
    fn kind_of_match_is_reported() {
        let t = table();
        assert_eq!(
            t.find_with_kind("api.example.com"),
            Some((0, HostMatch::Exact))
        );
        assert_eq!(
            t.find_with_kind("a.b.example.com"),
            Some((2, HostMatch::Suffix))
        );
        assert_eq!(t.find_with_kind("other.org:80"), Some((3, HostMatch::Any)));
    }

    #[test]
    fn star_is_the_fallback() {
        assert_eq!(table().find("other.org"), Some(3));
    }
}
