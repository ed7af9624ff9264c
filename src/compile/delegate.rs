//! VirtualService delegation (`http[].delegate`), as istiod does it: a load-time rewrite of the
//! root's route into the delegate's routes, each merged with the root route.
//!
//! One level only. The delegate is a VirtualService without `hosts`, visible (`exportTo`) to the
//! root's namespace; one that is missing or not visible drops just that root route, with a warning.
//! Per delegate route, in order: every delegate match must fit inside some root match (a conflict
//! drops the delegate route); each fitting (root, delegate) pair becomes one match where delegate
//! fields win and root fields fill the gaps; other route fields the delegate lacks come from the
//! root. Short names in the delegate resolve against the delegate's namespace.

use super::field::fpath;
use std::collections::BTreeMap;

use crate::config::{self, HttpMatchRequest, HttpRoute, Resource, Resources, StringMatch};

use super::names::{exported_to, resolve_gateway_ref};

/// Fills every listed `Option` field of `$out` that is unset from `$from`.
macro_rules! inherit {
    ($out:ident, $from:ident, $($f:ident),* $(,)?) => {$(
        if $out.$f.is_none() {
            $out.$f = $from.$f.clone();
        }
    )*};
}

/// The delegate a root route names, or why it cannot be used.
pub(super) fn find<'a>(
    resources: &'a Resources,
    root: &Resource<config::VirtualServiceSpec>,
    d: &config::Delegate,
) -> Result<&'a Resource<config::VirtualServiceSpec>, String> {
    let name = d.name.as_deref().unwrap_or_default();
    let ns = d.namespace.as_deref().unwrap_or(&root.namespace);
    let found = resources
        .virtual_services
        .iter()
        .find(|vs| vs.name == name && vs.namespace == ns && vs.spec.hosts.is_empty());
    match found {
        None => Err(format!(
            "delegate VirtualService {ns}/{name} does not exist (or has hosts, or was skipped); this route is dropped"
        )),
        Some(vs) if !exported_to(&vs.spec.export_to, &vs.namespace, &root.namespace) => Err(format!(
            "delegate VirtualService {ns}/{name} is not exported to namespace {}; this route is dropped",
            root.namespace
        )),
        Some(vs) => Ok(vs),
    }
}

/// The root route merged with one delegate route; `None` when their matches conflict.
/// `root_ns` resolves the root's match-level gateway names before they move into the delegate.
pub(super) fn merge(root: &HttpRoute, leaf: &HttpRoute, root_ns: &str) -> Option<HttpRoute> {
    let root_matches: Vec<HttpMatchRequest> = root
        .matches
        .iter()
        .map(|m| {
            let mut m = m.clone();
            for g in &mut m.gateways {
                if let Some(r) = resolve_gateway_ref(g, root_ns) {
                    *g = r;
                }
            }
            m
        })
        .collect();
    let matches = merge_matches(&root_matches, &leaf.matches)?;
    let mut out = leaf.clone();
    out.matches = matches;
    out.delegate = None;
    out.name = join_names(root.name.as_deref(), leaf.name.as_deref());
    inherit!(
        out,
        root,
        rewrite,
        direct_response,
        timeout,
        retries,
        fault,
        mirror,
        mirror_percent,
        mirror_percentage,
        cors_policy,
        headers
    );
    if out.mirrors.is_empty() {
        out.mirrors = root.mirrors.clone();
    }
    Some(out)
}

fn join_names(root: Option<&str>, leaf: Option<&str>) -> Option<String> {
    match (
        root.filter(|s| !s.is_empty()),
        leaf.filter(|s| !s.is_empty()),
    ) {
        (Some(r), Some(l)) => Some(fpath!(r, "-", l)),
        (Some(r), None) => Some(r.to_owned()),
        (None, l) => l.map(str::to_owned),
    }
}

/// Every delegate match must fit some root match; each fitting pair yields one merged match.
fn merge_matches(
    root: &[HttpMatchRequest],
    leaf: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(leaf.to_vec());
    }
    if leaf.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for l in leaf {
        let before = out.len();
        out.extend(
            root.iter()
                .filter(|r| !conflicts(r, l))
                .map(|r| merge_match(r, l)),
        );
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

fn merge_match(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = leaf.clone();
    out.name = join_names(root.name.as_deref(), leaf.name.as_deref());
    inherit!(
        out,
        root,
        uri,
        scheme,
        method,
        authority,
        port,
        source_namespace,
        stat_prefix
    );
    out.headers = union(&root.headers, &leaf.headers);
    out.without_headers = union(&root.without_headers, &leaf.without_headers);
    out.query_params = union(&root.query_params, &leaf.query_params);
    out.source_labels = union(&root.source_labels, &leaf.source_labels);
    if out.gateways.is_empty() {
        out.gateways = root.gateways.clone();
    }
    out
}

/// Root entries, then the leaf's (the leaf wins per key).
fn union<V: Clone>(root: &BTreeMap<String, V>, leaf: &BTreeMap<String, V>) -> BTreeMap<String, V> {
    let mut out = root.clone();
    out.extend(leaf.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// The leaf asks for something the root match cannot contain.
fn conflicts(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let pairs = [
        (root.uri.as_ref(), leaf.uri.as_ref()),
        (root.scheme.as_deref(), leaf.scheme.as_deref()),
        (root.method.as_deref(), leaf.method.as_deref()),
        (root.authority.as_deref(), leaf.authority.as_deref()),
    ];
    if pairs.iter().any(|(r, l)| str_conflict(*r, *l)) {
        return true;
    }
    for (rmap, lmap) in [
        (&root.headers, &leaf.headers),
        (&root.without_headers, &leaf.without_headers),
        (&root.query_params, &leaf.query_params),
    ] {
        for (k, l) in lmap {
            let r = rmap.get(k).and_then(Option::as_deref);
            if str_conflict(r, l.as_deref()) {
                return true;
            }
        }
    }
    if root.ignore_uri_case != leaf.ignore_uri_case {
        return true;
    }
    if let (Some(r), Some(l)) = (root.port, leaf.port) {
        if r > 0 && l > 0 && r != l {
            return true;
        }
    }
    if let Some(ns) = root.source_namespace.as_deref().filter(|s| !s.is_empty()) {
        if leaf.source_namespace.as_deref() != Some(ns) {
            return true;
        }
    }
    if leaf
        .source_labels
        .iter()
        .any(|(k, v)| root.source_labels.get(k).is_some_and(|rv| rv != v))
    {
        return true;
    }
    // The root's gateways must be a superset of the leaf's.
    !root.gateways.is_empty()
        && !leaf.gateways.is_empty()
        && leaf.gateways.iter().any(|g| !root.gateways.contains(g))
}

fn str_conflict(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    let (Some(r), Some(l)) = (root, leaf) else {
        return false;
    };
    let set = |s: &Option<String>| s.as_deref().is_some_and(|v| !v.is_empty());
    let any = |m: &StringMatch| set(&m.exact) || set(&m.prefix) || set(&m.regex);
    if set(&r.regex) || set(&l.regex) {
        // A regex on one side with any value on the other cannot be checked for containment.
        return any(r) && any(l);
    }
    if let Some(exact) = r.exact.as_deref().filter(|s| !s.is_empty()) {
        return set(&l.prefix) || l.exact.as_deref() != Some(exact);
    }
    if let Some(prefix) = r.prefix.as_deref().filter(|s| !s.is_empty()) {
        if let Some(lp) = l.prefix.as_deref().filter(|s| !s.is_empty()) {
            return !lp.starts_with(prefix);
        }
        if let Some(le) = l.exact.as_deref().filter(|s| !s.is_empty()) {
            return !le.starts_with(prefix);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(kind: &str, v: &str) -> Option<StringMatch> {
        let v = Some(v.to_owned());
        Some(match kind {
            "exact" => StringMatch {
                exact: v,
                ..Default::default()
            },
            "prefix" => StringMatch {
                prefix: v,
                ..Default::default()
            },
            _ => StringMatch {
                regex: v,
                ..Default::default()
            },
        })
    }

    /// A header/query condition value, as the model holds it.
    fn hm(kind: &str, v: &str) -> Option<Box<StringMatch>> {
        sm(kind, v).map(Box::new)
    }

    #[test]
    fn string_match_containment() {
        let c =
            |r: Option<StringMatch>, l: Option<StringMatch>| str_conflict(r.as_ref(), l.as_ref());
        assert!(!c(sm("prefix", "/a"), sm("prefix", "/a/b")));
        assert!(c(sm("prefix", "/a/b"), sm("prefix", "/a")));
        assert!(!c(sm("prefix", "/a"), sm("exact", "/a/x")));
        assert!(c(sm("exact", "/a"), sm("exact", "/b")));
        assert!(!c(sm("exact", "/a"), sm("exact", "/a")));
        assert!(c(sm("exact", "/a"), sm("prefix", "/a")));
        assert!(c(sm("regex", "/a.*"), sm("prefix", "/a")));
        assert!(c(sm("prefix", "/a"), sm("regex", "/a.*")));
        assert!(!c(None, sm("regex", "/a.*")));
        assert!(!c(sm("prefix", "/a"), None));
    }

    #[test]
    fn matches_merge_with_the_leaf_winning() {
        let root = HttpMatchRequest {
            uri: sm("prefix", "/shop"),
            headers: [
                ("x-a".into(), hm("exact", "1")),
                ("x-b".into(), hm("exact", "1")),
            ]
            .into(),
            ..Default::default()
        };
        let leaf = HttpMatchRequest {
            uri: sm("prefix", "/shop/cart"),
            headers: [
                ("x-b".into(), hm("exact", "1")),
                ("x-c".into(), hm("exact", "3")),
            ]
            .into(),
            ..Default::default()
        };
        let merged = merge_matches(std::slice::from_ref(&root), std::slice::from_ref(&leaf))
            .expect("compatible");
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].uri, sm("prefix", "/shop/cart"));
        assert_eq!(merged[0].headers.get("x-a"), Some(&hm("exact", "1")));
        assert_eq!(merged[0].headers.get("x-c"), Some(&hm("exact", "3")));
        let other_value = HttpMatchRequest {
            headers: [("x-b".into(), hm("exact", "2"))].into(),
            ..leaf
        };
        assert!(merge_matches(std::slice::from_ref(&root), &[other_value]).is_none());
        let outside = HttpMatchRequest {
            uri: sm("prefix", "/admin"),
            ..Default::default()
        };
        assert!(merge_matches(&[root], &[outside]).is_none());
    }
}
