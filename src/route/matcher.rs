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

/// What a `headers` condition reads: a request header, or one of the pseudo-headers Envoy
/// exposes to header matchers for HTTP/1.1 and HTTP/2 alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderTarget {
    Header(HeaderName),
    /// `:method`
    Method,
    /// `:authority`: `Host` (HTTP/1.1) or `:authority` (HTTP/2), as sent.
    Authority,
    /// `:path`: the normalised path with the query string, as Envoy's router sees it.
    Path,
    /// `:scheme`
    Scheme,
}

impl HeaderTarget {
    /// `None` for a pseudo-header Envoy does not expose (`:status`, `:foo`).
    pub fn from_name(name: &str) -> Option<Result<HeaderTarget, http::header::InvalidHeaderName>> {
        Some(Ok(match name {
            ":method" => HeaderTarget::Method,
            ":authority" => HeaderTarget::Authority,
            ":path" => HeaderTarget::Path,
            ":scheme" => HeaderTarget::Scheme,
            n if n.starts_with(':') => return None,
            n => return Some(HeaderName::from_bytes(n.as_bytes()).map(HeaderTarget::Header)),
        }))
    }
}

#[derive(Debug, Clone)]
pub struct HeaderCondition {
    pub name: HeaderTarget,
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

    /// The part of `path` the path condition matched, which `rewrite.uri` and a redirect's
    /// `uri` (prefixRewrite) replace: the prefix for a prefix match, the whole path for exact and
    /// regex, and `/` without a path condition (Envoy's implicit `prefix: /`).
    pub fn matched_len(&self, path: &str) -> usize {
        let len = match self.path.as_ref().map(|m| &m.kind) {
            Some(StrMatch::Prefix(p)) => p.len(),
            Some(StrMatch::Exact(_) | StrMatch::Regex(_)) => path.len(),
            None | Some(StrMatch::Present) => 1,
        };
        let len = len.min(path.len());
        if path.is_char_boundary(len) {
            len
        } else {
            0
        }
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
        let pseudo = match &self.name {
            HeaderTarget::Header(name) => return self.header_holds(name, req),
            HeaderTarget::Method => req.method.as_str().into(),
            HeaderTarget::Authority => req.authority.into(),
            HeaderTarget::Scheme => req.scheme.into(),
            HeaderTarget::Path => match req.query {
                Some(q) => format!("{}?{q}", req.path).into(),
                None => std::borrow::Cow::Borrowed(req.path),
            },
        };
        // Pseudo-headers are always present.
        self.kind.matches(&pseudo) != self.invert
    }

    fn header_holds(&self, name: &HeaderName, req: &RequestView<'_>) -> bool {
        let mut values = req.headers.get_all(name).iter();
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
                        .get_all(name)
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
                name: HeaderTarget::Header(HeaderName::from_static("x")),
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
