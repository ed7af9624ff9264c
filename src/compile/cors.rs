//! `corsPolicy` → `route::CorsPolicy`: validated as istiod validates it, translated as istiod
//! translates it for Envoy (lists joined with `,`, `maxAge` in whole seconds).

use super::field::fpath;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::config::{self, ErrorKind};
use crate::route::{CorsPolicy, StrMatch};

use super::headers::invalid;
use super::matchers::str_match;
use super::{duration_field, Ctx};

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
];

/// Compiles a route's `corsPolicy`; `None` after reporting any error.
pub(super) fn compile_cors(
    c: &config::CorsPolicy,
    field: &str,
    cx: &mut Ctx<'_>,
) -> Option<Arc<CorsPolicy>> {
    let errors_before = cx.error_count();
    let mut allow_origins = Vec::new();
    for (i, o) in c.allow_origins.iter().enumerate() {
        let f = fpath!(field, ".allowOrigins[", i, "]");
        if o.exact.as_deref() == Some("") || o.regex.as_deref() == Some("") {
            cx.error(&f, invalid("origin match", "", "must not be empty"));
            continue;
        }
        match str_match(o, &f, false, false, cx) {
            Some(StrMatch::Present) => cx.error(
                &f,
                ErrorKind::Note("one of exact, prefix or regex is required".into()),
            ),
            Some(m) => allow_origins.push(m),
            None => {}
        }
    }
    if !c.allow_origin.is_empty() {
        if c.allow_origins.is_empty() {
            // The deprecated list: exact matches, as istiod translates it.
            allow_origins.extend(
                c.allow_origin
                    .iter()
                    .map(|o| StrMatch::Exact(o.as_str().into())),
            );
        } else {
            cx.warn(
                &fpath!(field, ".allowOrigin"),
                ErrorKind::Note(
                    "deprecated allowOrigin is ignored when allowOrigins is set (as in Istio)"
                        .into(),
                ),
            );
        }
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if !METHODS.contains(&m.as_str()) {
            cx.error(
                &fpath!(field, ".allowMethods[", i, "]"),
                invalid("method", m, "not an HTTP method"),
            );
        }
    }
    for (key, list) in [
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (i, h) in list.iter().enumerate() {
            if h != "*" && HeaderName::from_bytes(h.as_bytes()).is_err() {
                cx.error(
                    &fpath!(field, ".", key, "[", i, "]"),
                    invalid("header name", h, "not an HTTP token"),
                );
            }
        }
    }
    let max_age = c.max_age.as_deref().and_then(|t| {
        let f = fpath!(field, ".maxAge");
        let d = duration_field(t, &f, cx)?;
        if d.subsec_nanos() != 0 {
            cx.error(
                &f,
                ErrorKind::BadDuration {
                    value: t.into(),
                    why: "must be a whole number of seconds",
                },
            );
            return None;
        }
        Some(HeaderValue::from(d.as_secs()))
    });
    let forward_unmatched_preflights = match c.unmatched_preflights.as_deref() {
        None | Some("UNSPECIFIED" | "FORWARD") => true,
        Some("IGNORE") => false,
        Some(other) => {
            cx.error(
                &fpath!(field, ".unmatchedPreflights"),
                invalid("unmatchedPreflights", other, "use FORWARD or IGNORE"),
            );
            true
        }
    };
    if cx.error_count() != errors_before {
        return None;
    }
    Some(Arc::new(CorsPolicy {
        allow_origins,
        allow_methods: joined(&c.allow_methods),
        allow_headers: joined(&c.allow_headers),
        expose_headers: joined(&c.expose_headers),
        max_age,
        allow_credentials: c.allow_credentials == Some(true),
        forward_unmatched_preflights,
    }))
}

/// `a,b,c`, or `None` for an empty list (Envoy then sends no header).
fn joined(list: &[String]) -> Option<HeaderValue> {
    if list.is_empty() {
        return None;
    }
    // Every entry was checked to be a token or a method, so the value is valid.
    HeaderValue::from_str(&list.join(",")).ok()
}

#[cfg(test)]
mod tests {
    use crate::compile::{compile, Options};
    use crate::config::load_str;

    /// Compiles one forwarding route with `corsPolicy: {policy}`; returns errors and warnings.
    fn check(policy: &str) -> (Vec<String>, Vec<String>) {
        let yaml = format!("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  servers:\n  - port: {{number: 80, name: http, protocol: HTTP}}\n    hosts: [\"*\"]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: m}}}}]\n    corsPolicy: {{{policy}}}\n");
        let (resources, report) = load_str(&yaml, "t.yaml", "default");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let (_, report) = compile(&resources, &Options::default());
        let show = |v: &[crate::config::ConfigError]| v.iter().map(|e| e.to_string()).collect();
        (show(&report.errors), show(&report.warnings))
    }

    #[track_caller]
    fn one_error(policy: &str, needle: &str) {
        let (errors, _) = check(policy);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains(needle), "{} lacks {needle}", errors[0]);
    }

    #[test]
    fn istio_validation_rules() {
        one_error(
            "allowOrigins: [{regex: \"[a-\"}]",
            "corsPolicy.allowOrigins[0].regex: invalid regex",
        );
        one_error("allowOrigins: [{exact: \"\"}]", "allowOrigins[0]: invalid");
        one_error("allowOrigins: [{}]", "allowOrigins[0]: one of exact");
        one_error("allowMethods: [get]", "allowMethods[0]: invalid method");
        one_error("allowHeaders: [\"a b\"]", "allowHeaders[0]: invalid header");
        one_error(
            "exposeHeaders: [\"x:y\"]",
            "exposeHeaders[0]: invalid header",
        );
        one_error("maxAge: 1500ms", "maxAge: invalid duration");
        one_error("unmatchedPreflights: DROP", "unmatchedPreflights: invalid");
        let (errors, warnings) = check(
            "allowOrigins: [{prefix: a}], allowOrigin: [b], allowHeaders: [\"*\"], maxAge: 2m, unmatchedPreflights: IGNORE",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("corsPolicy.allowOrigin: deprecated allowOrigin is ignored"));
    }
}
