//! `match[]` entries → request matchers: StringMatch, anchored RE2-syntax regexes, header and
//! query conditions, and the build-time conditions (port, gateways, source labels/namespace).
//! Owns [`Regexes`]: one compiled regex per distinct pattern of a config, and [`RegexCache`]: the
//! patterns of the config being served, which the next compile takes instead of compiling again.

use super::field::fpath;
use foldhash::HashMap;

use regex::Regex;

use crate::config::{self, ErrorKind, StringMatch};
use crate::route::{
    regex_error_reason, FullMatch, HeaderCondition, HeaderTarget, PathMatch, QueryCondition,
    RequestMatch, StrMatch,
};

use super::headers::invalid;
use super::names::{is_dns_label, resolve_gateway_ref};
use super::templates::MatchTemplate;
use super::Ctx;

/// Istio's limit on regex length (a proxy for RE2 program size).
const MAX_REGEX: usize = 1024;

/// The regexes of string matches compiled so far, by pattern: a route whose pattern was seen
/// before shares its [`FullMatch`] (about 1.9 KB each) instead of compiling another. `seen`
/// starts with those of the config being served (`seed`), taken on their first use.
#[derive(Default)]
pub(super) struct Regexes {
    seed: RegexCache,
    seen: HashMap<Box<str>, FullMatch>,
}

impl Regexes {
    pub(super) fn seeded(seed: &RegexCache) -> Regexes {
        Regexes {
            seed: seed.clone(),
            seen: HashMap::default(),
        }
    }

    fn get(&mut self, pattern: &str) -> Option<FullMatch> {
        if let Some(r) = self.seen.get(pattern) {
            return Some(r.clone());
        }
        let r = self.seed.0.get(pattern)?.clone();
        self.seen.insert(pattern.into(), r.clone());
        Some(r)
    }
}

/// The compiled regexes of one config's string matches, by pattern (shared with its route
/// tables: a [`FullMatch`] is immutable but for its match cache). A reload compiles with the
/// served config's cache: a pattern it already has is not compiled again (a third of a compile
/// of 10,000 routes with a regex in every third one). Only the patterns a compile used are kept
/// for the next, so an edit that drops a pattern drops it here too.
#[derive(Clone, Default)]
pub struct RegexCache(std::sync::Arc<HashMap<Box<str>, FullMatch>>);

impl RegexCache {
    /// The patterns of the threads' [`Regexes`], together.
    pub(super) fn gather(parts: Vec<Regexes>) -> RegexCache {
        let mut parts = parts.into_iter().map(|p| p.seen);
        let mut all = parts.next().unwrap_or_default();
        for part in parts {
            all.extend(part);
        }
        RegexCache(std::sync::Arc::new(all))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The compiled regex of `pattern`, when the cache has it.
    pub fn get(&self, pattern: &str) -> Option<&FullMatch> {
        self.0.get(pattern)
    }
}

impl std::fmt::Debug for RegexCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegexCache({} patterns)", self.0.len())
    }
}

pub(super) fn compile_match(
    m: &config::HttpMatchRequest,
    field: &str,
    namespace: &str,
    cx: &mut Ctx<'_>,
) -> Option<MatchTemplate> {
    let errors_before = cx.error_count();
    let path = m.uri.as_ref().and_then(|u| {
        str_match(u, &fpath!(field, ".uri"), true, false, cx).map(|kind| PathMatch {
            kind,
            ignore_case: m.ignore_uri_case,
        })
    });
    let method = m
        .method
        .as_ref()
        .and_then(|s| str_match(s, &fpath!(field, ".method"), false, false, cx));
    let scheme = m
        .scheme
        .as_ref()
        .and_then(|s| str_match(s, &fpath!(field, ".scheme"), false, false, cx));
    let authority = m
        .authority
        .as_ref()
        .and_then(|s| str_match(s, &fpath!(field, ".authority"), false, false, cx));
    let mut headers = Vec::new();
    for (invert, key, map) in [
        (false, "headers", &m.headers),
        (true, "withoutHeaders", &m.without_headers),
    ] {
        for (name, sm) in map {
            let f = fpath!(field, ".", key, ".", name);
            if name.starts_with("@request.auth.claims") {
                cx.warn(
                    &f,
                    ErrorKind::Unsupported {
                        what: "JWT claim matching".into(),
                        why: "it needs RequestAuthentication; this condition never matches",
                    },
                );
            }
            let hname = match HeaderTarget::from_name(&name.to_ascii_lowercase()) {
                Some(Ok(h)) => h,
                Some(Err(_)) => {
                    cx.error(&f, invalid("header name", name, "not an HTTP token"));
                    continue;
                }
                None => {
                    cx.error(
                        &f,
                        invalid(
                            "pseudo-header",
                            name,
                            "only :method, :authority, :path and :scheme can be matched",
                        ),
                    );
                    continue;
                }
            };
            let Some(sm) = sm else {
                cx.error(
                    &f,
                    invalid("header match", "null", "use {} to match presence"),
                );
                continue;
            };
            if let Some(kind) = str_match(sm, &f, false, invert, cx) {
                headers.push(HeaderCondition {
                    name: hname,
                    kind,
                    invert,
                });
            }
        }
    }
    let mut query = Vec::new();
    for (name, sm) in &m.query_params {
        let f = fpath!(field, ".queryParams.", name);
        let kind = match sm {
            None => StrMatch::Present,
            Some(sm) => match str_match(sm, &f, false, false, cx) {
                Some(k) => k,
                None => continue,
            },
        };
        query.push(QueryCondition {
            name: name.as_str().into(),
            kind,
        });
    }
    let port = match m.port {
        None => None,
        Some(p) => port_number(p, &fpath!(field, ".port"), cx),
    };
    if let Some(ns) = &m.source_namespace {
        if !is_dns_label(ns) {
            cx.error(
                &fpath!(field, ".sourceNamespace"),
                invalid("namespace", ns, "not a DNS-1123 label"),
            );
        }
    }
    // `gateways: [mesh]` names no gateway: the entry must not match here (it is not "unset").
    let gateways = (!m.gateways.is_empty()).then(|| {
        m.gateways
            .iter()
            .filter_map(|g| resolve_gateway_ref(g, namespace))
            .collect()
    });
    if cx.error_count() != errors_before {
        return None;
    }
    Some(MatchTemplate {
        index: 0,
        matcher: RequestMatch {
            path,
            method,
            scheme,
            authority,
            headers,
            query,
        },
        port,
        gateways,
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone(),
    })
}

/// Compiles a StringMatch. `allow_empty_prefix`: `uri` may use `prefix: ""`.
/// `star_is_presence`: in withoutHeaders, `regex: "*"` means presence.
pub(super) fn str_match(
    sm: &StringMatch,
    field: &str,
    allow_empty_prefix: bool,
    star_is_presence: bool,
    cx: &mut Ctx<'_>,
) -> Option<StrMatch> {
    let set = [sm.exact.is_some(), sm.prefix.is_some(), sm.regex.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if set > 1 {
        cx.error(
            field,
            invalid(
                "string match",
                &format!("{sm:?}"),
                "use only one of exact, prefix, regex",
            ),
        );
        return None;
    }
    if let Some(e) = &sm.exact {
        return Some(StrMatch::Exact(e.as_str().into()));
    }
    if let Some(p) = &sm.prefix {
        if p.is_empty() && !allow_empty_prefix {
            cx.error(
                &fpath!(field, ".prefix"),
                invalid("prefix", p, "must not be empty"),
            );
            return None;
        }
        return Some(StrMatch::Prefix(p.as_str().into()));
    }
    if let Some(r) = &sm.regex {
        if star_is_presence && r == "*" {
            return Some(StrMatch::Present);
        }
        return shared_regex(r, &fpath!(field, ".regex"), cx).map(StrMatch::Regex);
    }
    Some(StrMatch::Present)
}

/// [`FullMatch::new`] through the context's [`Regexes`] when it has them.
fn shared_regex(pattern: &str, field: &str, cx: &mut Ctx<'_>) -> Option<FullMatch> {
    if let Some(r) = cx.regexes.as_deref_mut().and_then(|c| c.get(pattern)) {
        return Some(r);
    }
    check_pattern(pattern, field, cx)?;
    let r = FullMatch::new(pattern)
        .map_err(|reason| bad_regex(pattern, reason, field, cx))
        .ok()?;
    if let Some(cache) = cx.regexes.as_deref_mut() {
        cache.seen.insert(pattern.into(), r.clone());
    }
    Some(r)
}

/// Compiles an RE2-syntax regex as written (`uriRegexRewrite`: searched, not a full match).
pub(super) fn compile_regex(pattern: &str, field: &str, cx: &mut Ctx<'_>) -> Option<Regex> {
    check_pattern(pattern, field, cx)?;
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| bad_regex(pattern, regex_error_reason(e), field, cx))
        .ok()
}

/// Istio's checks before compiling: not empty, at most [`MAX_REGEX`] characters.
fn check_pattern(pattern: &str, field: &str, cx: &mut Ctx<'_>) -> Option<()> {
    if pattern.is_empty() {
        bad_regex(pattern, "empty regex".into(), field, cx);
        return None;
    }
    if pattern.len() > MAX_REGEX {
        let shown = format!("{}…", &pattern[..pattern.floor_char_boundary(40)]);
        bad_regex(
            &shown,
            fpath!("longer than ", MAX_REGEX, " characters"),
            field,
            cx,
        );
        return None;
    }
    Some(())
}

fn bad_regex(pattern: &str, reason: String, field: &str, cx: &mut Ctx<'_>) {
    cx.error(
        field,
        ErrorKind::BadRegex {
            pattern: pattern.into(),
            reason,
        },
    );
}

pub(super) fn port_number(p: i64, field: &str, cx: &mut Ctx<'_>) -> Option<u16> {
    if (1..=65535).contains(&p) {
        Some(p as u16)
    } else {
        cx.error(
            field,
            ErrorKind::OutOfRange {
                value: p,
                min: 1,
                max: 65535,
            },
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::{compile, compile_reusing, Options};

    fn config(patterns: &[&str]) -> crate::config::Resources {
        let mut yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n\
             spec:\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n---\n\
             apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n\
             spec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n"
            .to_owned();
        for p in patterns {
            yaml.push_str(&format!(
                "  - match: [{{uri: {{regex: '{p}'}}}}]\n    directResponse: {{status: 200}}\n"
            ));
        }
        let (res, report) = crate::config::load_str(&yaml, "t.yaml", "default");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        res
    }

    /// A compile that reuses a cache takes the very regexes it has; a new pattern is compiled,
    /// and a pattern no longer used is not carried into the next cache.
    #[test]
    fn a_reused_cache_gives_the_same_regexes_and_keeps_only_those_in_use() {
        let opts = Options::default();
        let first = compile(&config(&["/a/[0-9]+", "/b/[a-z]+", "/a/[0-9]+"]), &opts)
            .0
            .unwrap()
            .regexes;
        assert_eq!(first.len(), 2);
        let (second, report) =
            compile_reusing(&config(&["/a/[0-9]+", "/c/.*", "[bad"]), &opts, &first);
        assert!(second.is_none(), "the bad pattern is still an error");
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        let second = compile_reusing(&config(&["/a/[0-9]+", "/c/.*"]), &opts, &first)
            .0
            .unwrap()
            .regexes;
        assert_eq!(second.len(), 2);
        let a = second.get("/a/[0-9]+").unwrap();
        assert!(a.same(first.get("/a/[0-9]+").unwrap()), "compiled again");
        assert!(a.is_match("/a/42") && !a.is_match("/a/x"));
        let c = second.get("/c/.*").unwrap();
        assert!(c.is_match("/c/d") && !c.is_match("/d"));
        assert!(
            second.get("/b/[a-z]+").is_none(),
            "an unused pattern was kept"
        );
        // Without the cache, the same pattern is another compile.
        let cold = compile(&config(&["/a/[0-9]+"]), &opts).0.unwrap().regexes;
        assert!(!cold.get("/a/[0-9]+").unwrap().same(a));
    }
}
