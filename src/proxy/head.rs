//! The upstream request head of one request: path rewrite, forwarding headers, host, route and
//! destination header operations. Built once; every attempt and mirror sends a copy addressed to
//! its endpoint. May not touch: bodies, endpoint choice.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderName};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method};

use crate::route::{Forward, PathRewrite, Route, TemplateContext, WeightedCluster};
use crate::upstream::{Endpoint, Outgoing};

use super::error::ProxyError;
use super::headers::{self, Added, X_ENVOY_ATTEMPT_COUNT, X_ENVOY_ORIGINAL_PATH};

const X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: HeaderName =
    HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
const X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// The upstream request head, built once and sent by every attempt and mirror.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: Method,
    pub path_and_query: PathAndQuery,
    pub headers: HeaderMap,
    /// Headers sent after `headers`, which holds none of their names: the forwarding headers
    /// the client did not send and the trace context (`headers::Added`).
    pub added: Added,
}

/// What the upstream head is built from: the routing decision and the request's facts.
#[derive(Debug, Clone, Copy)]
pub struct HeadInput<'a> {
    pub route: &'a Route,
    pub action: &'a Forward,
    pub destination: &'a WeightedCluster,
    pub peer: SocketAddr,
    /// For `%HOSTNAME%`.
    pub hostname: &'a str,
    /// For `%START_TIME%`.
    pub start_time: SystemTime,
    /// The request's authority as received.
    pub authority: &'a str,
    /// The normalised path.
    pub path: &'a str,
    pub websocket: bool,
    /// The downstream scheme, sent as `x-forwarded-proto`.
    pub scheme: &'a str,
    /// `x-forwarded-client-cert` of the connection (SANITIZE_SET: the client's own is dropped).
    pub client_cert: Option<&'a HeaderValue>,
}

impl Head {
    /// Builds the head from the client's request. Also returns the client's headers as they
    /// arrived when a header template (`%REQ(x)%`) needs them (empty otherwise), for the
    /// response-side operations.
    ///
    /// # Errors
    /// `BadPath` for a path that cannot be sent, `MissingHost` for an unusable authority.
    pub fn build(mut parts: Parts, input: &HeadInput<'_>) -> Result<(Head, HeaderMap), ProxyError> {
        let HeadInput {
            route,
            action,
            destination: target,
            peer,
            hostname,
            start_time,
            authority,
            path,
            websocket,
            scheme,
            client_cert,
        } = *input;
        // Path: rewrite, then the path and query sent upstream.
        let new_path = rewrite_path(route, action.rewrite.as_deref(), path);
        let path_and_query = match (&new_path, parts.uri.path_and_query()) {
            // Usually the path goes as it came: the request's own (a shared slice), not remade.
            (None, Some(pq)) if pq.path() == path => pq.clone(),
            _ => {
                let mut pq = new_path.as_deref().unwrap_or(path).to_owned();
                if let Some(q) = parts.uri.query() {
                    pq.push('?');
                    pq.push_str(q);
                }
                PathAndQuery::try_from(pq).map_err(|_| ProxyError::BadPath)?
            }
        };

        // Templates like %REQ(x)% read the client's headers as they arrived; copy them only if needed.
        let dynamic = action.headers.request.is_dynamic()
            || action.headers.response.is_dynamic()
            || target.headers.request.is_dynamic()
            || target.headers.response.is_dynamic();
        let ctx_headers = if dynamic {
            parts.headers.clone()
        } else {
            HeaderMap::new()
        };
        let ctx = TemplateContext {
            remote: peer,
            request_headers: &ctx_headers,
            hostname,
            start_time,
        };
        let h = &mut parts.headers;
        let mut added = Added::new();
        headers::prepare_request(h, &mut added, peer.ip(), websocket);
        if scheme != "http" {
            if let Ok(v) = HeaderValue::from_str(scheme) {
                headers::set(h, &mut added, headers::X_FORWARDED_PROTO, v);
            }
        }
        // Istio gateways sanitize it (SANITIZE_SET): the client's is never forwarded (removed by
        // `prepare_request`), and a connection with a verified client certificate gets this hop's.
        if let Some(v) = client_cert {
            added.push((X_FORWARDED_CLIENT_CERT, v.clone()));
        }
        // The client's was removed (internal).
        if new_path.is_some() {
            if let Ok(v) = HeaderValue::from_str(parts.uri.path()) {
                added.push((X_ENVOY_ORIGINAL_PATH, v));
            }
        }
        let host = target
            .host_rewrite
            .as_deref()
            .or(action.host_rewrite.as_deref());
        match host {
            Some(v) => {
                h.insert(header::HOST, v.clone());
            }
            // Usually the authority is the client's own `Host` value: kept, not made anew.
            None if h.get(header::HOST).is_some_and(|v| v == authority) => {}
            None => {
                h.insert(
                    header::HOST,
                    HeaderValue::from_str(authority).map_err(|_| ProxyError::MissingHost)?,
                );
            }
        }
        if !(action.headers.request.is_empty() && target.headers.request.is_empty()) {
            // The route's operations see (and may change) every header: the added ones join the
            // map first.
            for (name, value) in added.drain(..) {
                h.insert(name, value);
            }
            action.headers.request.apply(h, &ctx);
            target.headers.request.apply(h, &ctx);
        }
        let head = Head {
            method: parts.method,
            path_and_query,
            headers: parts.headers,
            added,
        };
        Ok((head, ctx_headers))
    }

    /// The value of header `name` as it goes upstream (in the map or added).
    pub fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.headers
            .get(name)
            .or_else(|| self.added.iter().find(|(n, _)| n == name).map(|(_, v)| v))
    }

    /// The request for one attempt to `endpoint`, with that attempt's own headers: the head
    /// is lent, not copied (HTTP/1.1 writes it straight to the wire).
    pub fn outgoing<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        extra: &'a AttemptHeaders,
    ) -> Outgoing<'a> {
        Outgoing {
            method: &self.method,
            path_and_query: &self.path_and_query,
            headers: &self.headers,
            extra: extra.as_slice(),
            added: &self.added,
            authority: &endpoint.authority,
        }
    }
}

/// The headers each attempt sets for itself: `x-envoy-attempt-count`, and
/// `x-envoy-expected-rq-timeout-ms` when a timeout applies.
#[derive(Debug)]
pub struct AttemptHeaders {
    list: [(HeaderName, HeaderValue); 2],
    len: usize,
}

impl AttemptHeaders {
    pub fn new(attempt: u32, expected_timeout: Option<Duration>) -> AttemptHeaders {
        let count = (X_ENVOY_ATTEMPT_COUNT, attempt_count(attempt));
        match expected_timeout {
            Some(t) => AttemptHeaders {
                list: [
                    count,
                    (
                        X_ENVOY_EXPECTED_RQ_TIMEOUT_MS,
                        HeaderValue::from(t.as_millis() as u64),
                    ),
                ],
                len: 2,
            },
            None => AttemptHeaders {
                list: [count.clone(), count],
                len: 1,
            },
        }
    }

    pub fn as_slice(&self) -> &[(HeaderName, HeaderValue)] {
        &self.list[..self.len]
    }
}

/// `x-envoy-attempt-count`: a static value for the usual few attempts (no allocation).
fn attempt_count(n: u32) -> HeaderValue {
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match SMALL.get(n as usize) {
        Some(s) => HeaderValue::from_static(s),
        None => HeaderValue::from(n),
    }
}

/// Applies `rewrite.uri` (replacing the part the route's path condition matched) or
/// `uriRegexRewrite`. `None` when the path is unchanged.
fn rewrite_path(route: &Route, rewrite: Option<&PathRewrite>, path: &str) -> Option<String> {
    match rewrite? {
        PathRewrite::Matched(new) => {
            let rest = path.get(route.matcher.matched_len(path)..).unwrap_or("");
            Some(format!("{new}{rest}"))
        }
        PathRewrite::Regex {
            pattern,
            replacement,
        } => Some(pattern.replace_all(path, replacement.as_str()).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_counts_read_as_numbers() {
        for n in [1, 2, 9, 10, 11, 123] {
            assert_eq!(attempt_count(n), n.to_string().as_str());
        }
    }
}
