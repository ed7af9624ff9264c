//! Non-forwarding actions and path changes: `redirect`, `directResponse`, `rewrite`.

use super::field::fpath;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::config::{self, ErrorKind, HttpRoute};
use crate::route::{DirectResponse, HeaderOps, PathRewrite, Redirect, RedirectPath, RedirectPort};

use super::headers::conflict;
use super::headers::invalid;
use super::matchers::{compile_regex, port_number};
use super::templates::RedirectTemplate;
use super::Ctx;

/// istiod raises Envoy's direct-response body limit to 1 MiB.
const MAX_DIRECT_BODY: usize = 1024 * 1024;

pub(super) fn compile_rewrite(
    r: &config::HttpRewrite,
    field: &str,
    cx: &mut Ctx<'_>,
) -> Option<(Option<PathRewrite>, Option<HeaderValue>)> {
    if r.uri.is_some() && r.uri_regex_rewrite.is_some() {
        cx.error(field, conflict("uri", "uriRegexRewrite"));
        return None;
    }
    if r.uri.is_none() && r.uri_regex_rewrite.is_none() && r.authority.is_none() {
        cx.error(
            field,
            ErrorKind::Note("one of uri, uriRegexRewrite or authority is required".into()),
        );
        return None;
    }
    let path = if let Some(uri) = &r.uri {
        Some(PathRewrite::Matched(uri.as_str().into()))
    } else if let Some(rr) = &r.uri_regex_rewrite {
        let f = fpath!(field, ".uriRegexRewrite");
        let (Some(m), Some(rw)) = (&rr.pattern, &rr.rewrite) else {
            cx.error(
                &f,
                ErrorKind::Note("both match and rewrite are required".into()),
            );
            return None;
        };
        let pattern = compile_regex(m, &fpath!(f, ".match"), cx)?;
        // Envoy/RE2 write groups as \1; the regex crate as ${1}.
        let replacement = regex::Regex::new(r"\\(\d)")
            .expect("static regex")
            .replace_all(&rw.replace('$', "$$"), "$${$1}")
            .into_owned();
        Some(PathRewrite::Regex {
            pattern,
            replacement,
        })
    } else {
        None
    };
    let authority = match &r.authority {
        Some(a) => match HeaderValue::from_str(a) {
            Ok(v) if !a.is_empty() => Some(v),
            _ => {
                cx.error(
                    &fpath!(field, ".authority"),
                    invalid("authority", a, "not a valid host"),
                );
                return None;
            }
        },
        None => None,
    };
    Some((path, authority))
}

pub(super) fn compile_redirect(
    r: &config::HttpRedirect,
    route: &HttpRoute,
    field: &str,
    headers: HeaderOps,
    cx: &mut Ctx<'_>,
) -> Option<RedirectTemplate> {
    let errors_before = cx.error_count();
    if r.uri.is_some() && r.prefix_rewrite.is_some() {
        cx.error(field, conflict("uri", "prefixRewrite"));
    }
    if r.prefix_rewrite.is_some()
        && route
            .matches
            .iter()
            .any(|m| m.uri.as_ref().is_some_and(|u| u.prefix.is_none()))
    {
        cx.error(
            &fpath!(field, ".prefixRewrite"),
            ErrorKind::Note(
                "prefixRewrite needs every uri match of the route to be a prefix match".into(),
            ),
        );
    }
    if r.uri.is_none()
        && r.prefix_rewrite.is_none()
        && r.authority.is_none()
        && r.scheme.is_none()
        && r.port.is_none()
        && r.derive_port.is_none()
    {
        cx.error(
            field,
            ErrorKind::Note(
                "one of uri, prefixRewrite, authority, scheme, port or derivePort is required"
                    .into(),
            ),
        );
    }
    let code = match r.redirect_code.unwrap_or(0) {
        0 => StatusCode::MOVED_PERMANENTLY,
        c @ (301 | 302 | 303 | 307 | 308) => StatusCode::from_u16(c as u16).expect("valid code"),
        c => {
            cx.error(
                &fpath!(field, ".redirectCode"),
                invalid(
                    "redirect code",
                    &c.to_string(),
                    "use 301, 302, 303, 307 or 308",
                ),
            );
            StatusCode::MOVED_PERMANENTLY
        }
    };
    if let Some(s) = &r.scheme {
        if s != "http" && s != "https" {
            cx.error(
                &fpath!(field, ".scheme"),
                invalid("scheme", s, "use http or https"),
            );
        }
    }
    let mut from_request_port = false;
    let port = match (r.port, r.derive_port.as_deref()) {
        (Some(_), Some(_)) => {
            cx.error(field, conflict("port", "derivePort"));
            RedirectPort::Keep
        }
        (Some(p), None) => match port_number(p, &fpath!(field, ".port"), cx) {
            Some(p) => RedirectPort::Explicit(p),
            None => RedirectPort::Keep,
        },
        (None, Some("FROM_PROTOCOL_DEFAULT")) => RedirectPort::ProtocolDefault,
        (None, Some("FROM_REQUEST_PORT")) => {
            from_request_port = true;
            RedirectPort::Keep
        }
        (None, Some(other)) => {
            cx.error(
                &fpath!(field, ".derivePort"),
                invalid(
                    "derivePort",
                    other,
                    "use FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT",
                ),
            );
            RedirectPort::Keep
        }
        (None, None) => RedirectPort::Keep,
    };
    if cx.error_count() != errors_before {
        return None;
    }
    let path = match (&r.uri, &r.prefix_rewrite) {
        (Some(u), _) => RedirectPath::Replace(u.as_str().into()),
        (None, Some(p)) => RedirectPath::Prefix(p.as_str().into()),
        (None, None) => RedirectPath::Keep,
    };
    Some(RedirectTemplate {
        redirect: Redirect {
            code,
            scheme: r.scheme.as_deref().map(Into::into),
            authority: r.authority.as_deref().map(Into::into),
            port,
            path,
            headers,
        },
        from_request_port,
    })
}

pub(super) fn compile_direct(
    d: &config::HttpDirectResponse,
    field: &str,
    headers: HeaderOps,
    cx: &mut Ctx<'_>,
) -> Option<DirectResponse> {
    let Some(status) = d.status else {
        cx.error(&fpath!(field, ".status"), ErrorKind::Missing);
        return None;
    };
    if !(200..=600).contains(&status) {
        cx.error(
            &fpath!(field, ".status"),
            ErrorKind::OutOfRange {
                value: status,
                min: 200,
                max: 599,
            },
        );
        return None;
    }
    let status = StatusCode::from_u16(status as u16).expect("in range");
    let body = match &d.body {
        None => Bytes::new(),
        Some(b) => match (&b.string, &b.bytes) {
            (Some(_), Some(_)) => {
                cx.error(&fpath!(field, ".body"), conflict("string", "bytes"));
                return None;
            }
            (Some(s), None) => Bytes::from(s.clone()),
            (None, Some(b64)) => match base64::engine::general_purpose::STANDARD.decode(b64.trim())
            {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    cx.error(
                        &fpath!(field, ".body.bytes"),
                        invalid("base64", "…", &e.to_string()),
                    );
                    return None;
                }
            },
            (None, None) => Bytes::new(),
        },
    };
    if body.len() > MAX_DIRECT_BODY {
        cx.error(
            &fpath!(field, ".body"),
            invalid(
                "body",
                &format!("{} bytes", body.len()),
                "larger than 1 MiB",
            ),
        );
        return None;
    }
    if body.len() > 100 * 1024 {
        cx.warn(
            &fpath!(field, ".body"),
            ErrorKind::Note("direct response body is larger than 100 KiB".into()),
        );
    }
    Some(DirectResponse {
        status,
        body,
        headers,
    })
}
