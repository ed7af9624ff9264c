//! CORS on a forwarding route, as Envoy's CORS filter applies an Istio `corsPolicy`: a preflight
//! from an allowed origin is answered at the gateway; other responses get the allowed origin echoed.
//! May not touch: `config::*`, sockets, bodies (the request path decides what to do with the result).

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use http::{HeaderMap, HeaderValue, Method};

use super::StrMatch;

/// A compiled `corsPolicy`. List values are joined with `,` as istiod joins them for Envoy.
#[derive(Debug)]
pub struct CorsPolicy {
    /// `allowOrigins`, or the deprecated `allowOrigin` list as exact matches.
    pub allow_origins: Vec<StrMatch>,
    /// `allowMethods`; exactly `*` echoes the preflight's `access-control-request-method`.
    pub allow_methods: Option<HeaderValue>,
    /// `allowHeaders`; exactly `*` echoes the preflight's `access-control-request-headers`.
    pub allow_headers: Option<HeaderValue>,
    pub expose_headers: Option<HeaderValue>,
    /// `maxAge` in whole seconds.
    pub max_age: Option<HeaderValue>,
    pub allow_credentials: bool,
    /// `unmatchedPreflights`: `FORWARD` (the default, `true`) sends a preflight from an origin
    /// that is not allowed upstream; `IGNORE` answers it at the gateway without allow headers.
    pub forward_unmatched_preflights: bool,
}

/// What the gateway does with one request on a route with a CORS policy.
#[derive(Debug)]
pub enum CorsDecision {
    /// Not a CORS request, or its origin is not allowed: forward and add nothing.
    Pass,
    /// A preflight to answer at the gateway: 200, no body, these headers.
    Preflight(HeaderMap),
    /// Forward; set these headers on whatever response goes back (upstream or gateway-made).
    Allowed(HeaderMap),
}

// === impl CorsPolicy ===

impl CorsPolicy {
    /// Envoy's order: no `origin` → nothing; a preflight is `OPTIONS` with `origin` and
    /// `access-control-request-method`; anything else only gets response headers.
    pub fn decide(&self, method: &Method, headers: &HeaderMap) -> CorsDecision {
        let Some(origin) = headers.get(ORIGIN).filter(|o| !o.is_empty()) else {
            return CorsDecision::Pass;
        };
        let allowed = self.origin_allowed(origin);
        let preflight = method == Method::OPTIONS
            && headers
                .get(ACCESS_CONTROL_REQUEST_METHOD)
                .is_some_and(|m| !m.is_empty());
        if !preflight {
            return match allowed {
                true => CorsDecision::Allowed(self.response_headers(origin)),
                false => CorsDecision::Pass,
            };
        }
        if !allowed && self.forward_unmatched_preflights {
            return CorsDecision::Pass;
        }
        let mut out = HeaderMap::new();
        if allowed {
            out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        }
        if self.allow_credentials {
            out.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        for (name, value, echo) in [
            (
                ACCESS_CONTROL_ALLOW_METHODS,
                &self.allow_methods,
                ACCESS_CONTROL_REQUEST_METHOD,
            ),
            (
                ACCESS_CONTROL_ALLOW_HEADERS,
                &self.allow_headers,
                ACCESS_CONTROL_REQUEST_HEADERS,
            ),
        ] {
            if let Some(v) = value {
                let v = if v == "*" {
                    headers
                        .get(&echo)
                        .cloned()
                        .unwrap_or(HeaderValue::from_static(""))
                } else {
                    v.clone()
                };
                out.insert(name, v);
            }
        }
        if let Some(v) = &self.max_age {
            out.insert(ACCESS_CONTROL_MAX_AGE, v.clone());
        }
        // Envoy's own reply passes back through the filter's response side too.
        if allowed {
            out.extend(self.response_headers(origin));
        }
        CorsDecision::Preflight(out)
    }

    /// An origin is allowed when a matcher matches it, or matches `*` (`exact: "*"` allows all).
    fn origin_allowed(&self, origin: &HeaderValue) -> bool {
        let origin = std::str::from_utf8(origin.as_bytes()).ok();
        self.allow_origins
            .iter()
            .any(|m| m.matches("*") || origin.is_some_and(|o| m.matches(o)))
    }

    /// Headers every response to an allowed origin gets (they replace any the upstream sent).
    fn response_headers(&self, origin: &HeaderValue) -> HeaderMap {
        let mut out = HeaderMap::new();
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.allow_credentials {
            out.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(v) = &self.expose_headers {
            out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CorsPolicy {
        CorsPolicy {
            allow_origins: vec![StrMatch::Exact("https://a.example".into())],
            allow_methods: Some(HeaderValue::from_static("GET,POST")),
            allow_headers: Some(HeaderValue::from_static("*")),
            expose_headers: Some(HeaderValue::from_static("x-trace")),
            max_age: Some(HeaderValue::from_static("60")),
            allow_credentials: false,
            forward_unmatched_preflights: true,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn no_origin_is_not_a_cors_request() {
        let d = policy().decide(&Method::GET, &HeaderMap::new());
        assert!(matches!(d, CorsDecision::Pass));
    }

    #[test]
    fn wildcard_allow_headers_echoes_the_request() {
        let h = headers(&[
            ("origin", "https://a.example"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-a,x-b"),
        ]);
        let CorsDecision::Preflight(out) = policy().decide(&Method::OPTIONS, &h) else {
            panic!("not a preflight answer");
        };
        assert_eq!(out["access-control-allow-headers"], "x-a,x-b");
        assert_eq!(out["access-control-allow-methods"], "GET,POST");
        assert_eq!(out["access-control-expose-headers"], "x-trace");
    }

    #[test]
    fn exact_star_allows_every_origin() {
        let mut p = policy();
        p.allow_origins = vec![StrMatch::Exact("*".into())];
        let h = headers(&[("origin", "https://other.example")]);
        let CorsDecision::Allowed(out) = p.decide(&Method::GET, &h) else {
            panic!("origin not allowed");
        };
        assert_eq!(out["access-control-allow-origin"], "https://other.example");
    }

    #[test]
    fn options_without_request_method_is_a_plain_request() {
        let h = headers(&[("origin", "https://a.example")]);
        assert!(matches!(
            policy().decide(&Method::OPTIONS, &h),
            CorsDecision::Allowed(_)
        ));
    }
}
