//! Per-request conditions of a route: path, method, scheme, authority, headers, query.
//! Regexes are compiled once at load time and always anchored (Envoy `safe_regex` full match).

use http::header::HeaderName;
use regex::Regex;

use super::RequestView;

/// Istio `StringMatch`, compiled.
#[derive(Debug, Clone)]
pub enum StrMatch {
    Exact(Box<str>),
    Prefix(Box<str>),
    /// Anchored: compiled from `^(?:pattern)$`.
    Regex(Regex),
    /// `{}`: the header/parameter is present, with any value.
    Present,
}

/// The path condition; `ignore_case` applies to exact and prefix only (regex uses `(?i)`).
#[derive(Debug, Clone)]
pub struct PathMatch {
    pub kind: StrMatch,
    pub ignore_case: bool,
}

#[derive(Debug, Clone)]
pub struct HeaderCondition {
    pub name: HeaderName,
    pub kind: StrMatch,
    /// From `withoutHeaders`: the route matches when the condition does NOT hold
    /// (a missing header is evaluated as the empty string first, except for presence).
    pub invert: bool,
}

#[derive(Debug, Clone)]
pub struct QueryCondition {
    pub name: Box<str>,
    pub kind: StrMatch,
}

/// All conditions of one match entry; every one must hold (AND).
#[derive(Debug, Clone, Default)]
pub struct RequestMatch {
    pub path: Option<PathMatch>,
    pub method: Option<StrMatch>,
    pub scheme: Option<StrMatch>,
    pub authority: Option<StrMatch>,
    pub headers: Vec<HeaderCondition>,
    pub query: Vec<QueryCondition>,
}

// === impl StrMatch ===

impl StrMatch {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StrMatch::Exact(v) => value == &**v,
            StrMatch::Prefix(p) => value.starts_with(&**p),
            StrMatch::Regex(r) => r.is_match(value),
            StrMatch::Present => true,
        }
    }

    fn matches_ignore_case(&self, value: &str) -> bool {
        match self {
            StrMatch::Exact(v) => value.eq_ignore_ascii_case(v),
            StrMatch::Prefix(p) => value
                .as_bytes()
                .get(..p.len())
                .is_some_and(|v| v.eq_ignore_ascii_case(p.as_bytes())),
            other => other.matches(value),
        }
    }

    /// A catch-all path condition: prefix `/` (or empty) or regex `.*`.
    pub fn is_catch_all_path(&self) -> bool {
        match self {
            StrMatch::Prefix(p) => p.is_empty() || &**p == "/",
            StrMatch::Regex(r) => r.as_str() == "^(?:.*)$",
            StrMatch::Present => true,
            StrMatch::Exact(_) => false,
        }
    }
}

// === impl RequestMatch ===

impl RequestMatch {
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(p) = &self.path {
            let ok = if p.ignore_case {
                p.kind.matches_ignore_case(req.path)
            } else {
                p.kind.matches(req.path)
            };
            if !ok {
                return false;
            }
        }
        if let Some(m) = &self.method {
            if !m.matches(req.method.as_str()) {
                return false;
            }
        }
        if let Some(m) = &self.scheme {
            if !m.matches(req.scheme) {
                return false;
            }
        }
        if let Some(m) = &self.authority {
            if !m.matches(req.authority) {
                return false;
            }
        }
        self.headers.iter().all(|h| h.holds(req)) && self.query.iter().all(|q| q.holds(req.query))
    }

    /// Istio moves catch-all routes (path `/` or `.*`, no header/query conditions) to the end.
    pub fn is_catch_all(&self) -> bool {
        self.path
            .as_ref()
            .is_none_or(|p| p.kind.is_catch_all_path())
            && self.method.is_none()
            && self.scheme.is_none()
            && self.authority.is_none()
            && self.headers.is_empty()
            && self.query.is_empty()
    }
}

impl HeaderCondition {
    fn holds(&self, req: &RequestView<'_>) -> bool {
        let mut values = req.headers.get_all(&self.name).iter();
        let first = values.next();
        let result = match (first, &self.kind) {
            (None, StrMatch::Present) => false,
            // withoutHeaders evaluates a missing header as "" before inverting.
            (None, kind) => self.invert && kind.matches(""),
            (Some(v), kind) => match values.next() {
                // Repeated headers are joined with "," before matching, as Envoy does.
                None => kind.matches(v.to_str().unwrap_or("")),
                Some(_) => {
                    let joined = req
                        .headers
                        .get_all(&self.name)
                        .iter()
                        .map(|v| v.to_str().unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join(",");
                    kind.matches(&joined)
                }
            },
        };
        result != self.invert
    }
}

impl QueryCondition {
    /// The first occurrence of the parameter is used; names and values are compared raw.
    fn holds(&self, query: Option<&str>) -> bool {
        let Some(query) = query else {
            return false;
        };
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k == &*self.name {
                return self.kind.matches(v);
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, Method};

    fn view<'a>(path: &'a str, query: Option<&'a str>, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            method: &Method::GET,
            scheme: "http",
            authority: "a.example.com",
            path,
            query,
            headers,
        }
    }

    #[test]
    fn prefix_is_not_segment_aware() {
        let m = RequestMatch {
            path: Some(PathMatch {
                kind: StrMatch::Prefix("/foo".into()),
                ignore_case: false,
            }),
            ..Default::default()
        };
        let h = HeaderMap::new();
        assert!(m.matches(&view("/foobar", None, &h)));
        assert!(!m.matches(&view("/fo", None, &h)));
    }

    #[test]
    fn without_headers_matches_when_absent_or_different() {
        let m = RequestMatch {
            headers: vec![HeaderCondition {
                name: HeaderName::from_static("x"),
                kind: StrMatch::Exact("foo".into()),
                invert: true,
            }],
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        assert!(m.matches(&view("/", None, &h)));
        h.insert("x", HeaderValue::from_static("bar"));
        assert!(m.matches(&view("/", None, &h)));
        h.insert("x", HeaderValue::from_static("foo"));
        assert!(!m.matches(&view("/", None, &h)));
    }

    #[test]
    fn query_first_occurrence() {
        let q = QueryCondition {
            name: "a".into(),
            kind: StrMatch::Exact("1".into()),
        };
        assert!(q.holds(Some("b=2&a=1&a=3")));
        assert!(!q.holds(Some("a=3&a=1")));
        assert!(!q.holds(None));
    }
}
