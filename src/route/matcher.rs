//! Per-request conditions of a route: path, method, scheme, authority, headers, query.
//! Regexes are compiled once at load time and always anchored (Envoy `safe_regex` full match).

use std::borrow::Cow;

use http::header::HeaderName;

use super::{FullMatch, RequestView};

/// Istio `StringMatch`, compiled.
#[derive(Debug, Clone)]
pub enum StrMatch {
    Exact(Box<str>),
    Prefix(Box<str>),
    /// Anchored (a full match). Routes with the same pattern share one (clones do).
    Regex(FullMatch),
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
            StrMatch::Regex(r) => r.as_str() == ".*",
            StrMatch::Present => true,
            StrMatch::Exact(_) => false,
        }
    }
}

// === impl RequestMatch ===

impl RequestMatch {
    /// Do all conditions hold? Defined as "no condition fails", so the explainer's reasons and
    /// the request path can never disagree.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.first_mismatch(req).is_none()
    }

    /// The first condition that does not hold, in evaluation order (path, method, scheme,
    /// authority, headers, query), with the request's value; `None` when the route matches.
    pub fn first_mismatch<'a>(&'a self, req: &RequestView<'a>) -> Option<Mismatch<'a>> {
        let fail = |condition, actual| Some(Mismatch { condition, actual });
        if let Some(p) = &self.path {
            let ok = if p.ignore_case {
                p.kind.matches_ignore_case(req.path)
            } else {
                p.kind.matches(req.path)
            };
            if !ok {
                return fail(Condition::Path(p), Actual::Value(req.path.into()));
            }
        }
        if let Some(m) = &self.method {
            if !m.matches(req.method.as_str()) {
                return fail(
                    Condition::Method(m),
                    Actual::Value(req.method.as_str().into()),
                );
            }
        }
        if let Some(m) = &self.scheme {
            if !m.matches(req.scheme) {
                return fail(Condition::Scheme(m), Actual::Value(req.scheme.into()));
            }
        }
        if let Some(m) = &self.authority {
            if !m.matches(req.authority) {
                return fail(Condition::Authority(m), Actual::Value(req.authority.into()));
            }
        }
        for h in &self.headers {
            if let Err(actual) = h.check(req) {
                return fail(Condition::Header(h), actual);
            }
        }
        for q in &self.query {
            if let Err(actual) = q.check(req.query) {
                return fail(Condition::Query(q), actual);
            }
        }
        None
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
    /// `Err` carries what the request had, for [`Mismatch`].
    fn check<'a>(&self, req: &RequestView<'a>) -> Result<(), Actual<'a>> {
        let pseudo = match &self.name {
            HeaderTarget::Header(name) => return self.check_header(name, req),
            HeaderTarget::Method => req.method.as_str().into(),
            HeaderTarget::Authority => req.authority.into(),
            HeaderTarget::Scheme => req.scheme.into(),
            HeaderTarget::Path => match req.query {
                Some(q) => format!("{}?{q}", req.path).into(),
                None => Cow::Borrowed(req.path),
            },
        };
        // Pseudo-headers are always present.
        if self.kind.matches(&pseudo) != self.invert {
            Ok(())
        } else {
            Err(Actual::Value(pseudo))
        }
    }

    fn check_header<'a>(&self, name: &HeaderName, req: &RequestView<'a>) -> Result<(), Actual<'a>> {
        let mut values = req.headers.get_all(name).iter();
        let (result, actual) = match values.next() {
            None => {
                // withoutHeaders evaluates a missing header as "" before inverting.
                let r =
                    !matches!(self.kind, StrMatch::Present) && self.invert && self.kind.matches("");
                (r, Actual::Absent)
            }
            Some(v) => {
                let value: Cow<'a, str> = match values.next() {
                    None => Cow::Borrowed(v.to_str().unwrap_or("")),
                    // Repeated headers are joined with "," before matching, as Envoy does.
                    Some(_) => Cow::Owned(
                        req.headers
                            .get_all(name)
                            .iter()
                            .map(|v| v.to_str().unwrap_or(""))
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                };
                (self.kind.matches(&value), Actual::Value(value))
            }
        };
        if result != self.invert {
            Ok(())
        } else {
            Err(actual)
        }
    }
}

impl QueryCondition {
    /// The first occurrence of the parameter is used; names and values are compared raw.
    fn check<'a>(&self, query: Option<&'a str>) -> Result<(), Actual<'a>> {
        let Some(query) = query else {
            return Err(Actual::Absent);
        };
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k == &*self.name {
                return if self.kind.matches(v) {
                    Ok(())
                } else {
                    Err(Actual::Value(v.into()))
                };
            }
        }
        Err(Actual::Absent)
    }
}

/// The condition of a route that a request failed, and the request's value for it.
/// Displays as `uri prefix "/api" does not match "/cart/1"` or `header x-canary: absent`.
#[derive(Debug)]
pub struct Mismatch<'a> {
    pub condition: Condition<'a>,
    pub actual: Actual<'a>,
}

/// One condition of a [`RequestMatch`].
#[derive(Debug, Clone, Copy)]
pub enum Condition<'a> {
    Path(&'a PathMatch),
    Method(&'a StrMatch),
    Scheme(&'a StrMatch),
    Authority(&'a StrMatch),
    Header(&'a HeaderCondition),
    Query(&'a QueryCondition),
}

/// What the request had for a failed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actual<'a> {
    Value(Cow<'a, str>),
    Absent,
}

impl std::fmt::Display for StrMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StrMatch::Exact(v) => write!(f, "exact {v:?}"),
            StrMatch::Prefix(v) => write!(f, "prefix {v:?}"),
            StrMatch::Regex(r) => {
                // Shown as written: the anchoring is ours.
                write!(f, "regex {:?}", r.as_str())
            }
            StrMatch::Present => f.write_str("present"),
        }
    }
}

impl std::fmt::Display for HeaderTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeaderTarget::Header(n) => n.as_str(),
            HeaderTarget::Method => ":method",
            HeaderTarget::Authority => ":authority",
            HeaderTarget::Path => ":path",
            HeaderTarget::Scheme => ":scheme",
        })
    }
}

impl std::fmt::Display for Condition<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Condition::Path(p) if p.ignore_case => write!(f, "uri {} (ignoring case)", p.kind),
            Condition::Path(p) => write!(f, "uri {}", p.kind),
            Condition::Method(m) => write!(f, "method {m}"),
            Condition::Scheme(m) => write!(f, "scheme {m}"),
            Condition::Authority(m) => write!(f, "authority {m}"),
            Condition::Header(h) if h.invert => write!(f, "withoutHeaders {} {}", h.name, h.kind),
            Condition::Header(h) => write!(f, "header {} {}", h.name, h.kind),
            Condition::Query(q) => write!(f, "query {} {}", q.name, q.kind),
        }
    }
}

impl std::fmt::Display for Mismatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.condition, &self.actual) {
            (Condition::Header(h), Actual::Absent) if !h.invert => {
                write!(f, "header {}: absent", h.name)
            }
            (Condition::Query(q), Actual::Absent) => write!(f, "query {}: absent", q.name),
            (Condition::Header(h), Actual::Value(v)) if h.invert => {
                write!(f, "{} matches {v:?}", self.condition)
            }
            (c, Actual::Value(v)) => write!(f, "{c} does not match {v:?}"),
            (c, Actual::Absent) => write!(f, "{c}: absent"),
        }
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
        assert!(q.check(Some("b=2&a=1&a=3")).is_ok());
        assert_eq!(q.check(Some("a=3&a=1")), Err(Actual::Value("3".into())));
        assert_eq!(q.check(None), Err(Actual::Absent));
    }

    fn hdr(name: &str, kind: StrMatch, invert: bool) -> HeaderCondition {
        HeaderCondition {
            name: HeaderTarget::from_name(name).unwrap().unwrap(),
            kind,
            invert,
        }
    }

    /// `matches()` is defined through `first_mismatch()`; this pins it over a table of
    /// conditions and requests, and pins the reasons the explainer shows.
    #[test]
    fn matches_agrees_with_first_mismatch() {
        let matchers = [
            RequestMatch {
                path: Some(PathMatch {
                    kind: StrMatch::Prefix("/api".into()),
                    ignore_case: false,
                }),
                ..Default::default()
            },
            RequestMatch {
                path: Some(PathMatch {
                    kind: StrMatch::Exact("/API/x".into()),
                    ignore_case: true,
                }),
                method: Some(StrMatch::Exact("GET".into())),
                ..Default::default()
            },
            RequestMatch {
                method: Some(StrMatch::Exact("POST".into())),
                ..Default::default()
            },
            RequestMatch {
                headers: vec![hdr("x-canary", StrMatch::Exact("yes".into()), false)],
                query: vec![QueryCondition {
                    name: "v".into(),
                    kind: StrMatch::Regex(FullMatch::new("[0-9]+").unwrap()),
                }],
                ..Default::default()
            },
            RequestMatch {
                headers: vec![
                    hdr("x-canary", StrMatch::Present, true),
                    hdr(":path", StrMatch::Prefix("/api/x?".into()), false),
                ],
                ..Default::default()
            },
            RequestMatch {
                headers: vec![hdr("x-env", StrMatch::Exact("".into()), true)],
                authority: Some(StrMatch::Prefix("a.".into())),
                scheme: Some(StrMatch::Exact("http".into())),
                ..Default::default()
            },
        ];
        let mut yes = HeaderMap::new();
        yes.insert("x-canary", HeaderValue::from_static("yes"));
        let mut twice = HeaderMap::new();
        twice.append("x-canary", HeaderValue::from_static("yes"));
        twice.append("x-canary", HeaderValue::from_static("no"));
        let none = HeaderMap::new();
        let requests = [
            view("/api/x", Some("v=1"), &yes),
            view("/api/x", Some("v=a"), &yes),
            view("/api/x", None, &none),
            view("/cart", Some("v=1"), &twice),
            view("/ApI/X", None, &none),
            view("/", Some("a=1&v=22"), &yes),
        ];
        let mut agreed = 0;
        for m in &matchers {
            for r in &requests {
                assert_eq!(m.matches(r), m.first_mismatch(r).is_none(), "{m:?} {r:?}");
                agreed += 1;
            }
        }
        assert_eq!(agreed, 36);

        let reason = |m: &RequestMatch, r: &RequestView<'_>| {
            m.first_mismatch(r)
                .map(|x| x.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            reason(&matchers[0], &requests[3]),
            r#"uri prefix "/api" does not match "/cart""#
        );
        assert_eq!(reason(&matchers[1], &requests[4]), "");
        assert_eq!(
            reason(&matchers[2], &requests[0]),
            r#"method exact "POST" does not match "GET""#
        );
        assert_eq!(
            reason(&matchers[3], &requests[2]),
            "header x-canary: absent"
        );
        assert_eq!(
            reason(&matchers[3], &requests[3]),
            r#"header x-canary exact "yes" does not match "yes,no""#
        );
        assert_eq!(
            reason(&matchers[3], &requests[1]),
            r#"query v regex "[0-9]+" does not match "a""#
        );
        assert_eq!(
            reason(&matchers[3], &requests[4]),
            "header x-canary: absent"
        );
        assert_eq!(
            reason(&matchers[4], &requests[0]),
            r#"withoutHeaders x-canary present matches "yes""#
        );
        assert_eq!(
            reason(&matchers[4], &requests[4]),
            r#"header :path prefix "/api/x?" does not match "/ApI/X""#
        );
        assert_eq!(
            reason(&matchers[5], &requests[0]),
            r#"withoutHeaders x-env exact "": absent"#
        );
    }
}
