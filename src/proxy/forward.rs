//! Forwarding a routed request: pick a cluster by weight, pick an endpoint, send, stream back.
//! Timeouts and retries (the resilience work) wrap `send` here.

use std::error::Error as _;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::time::Instant;

use crate::route::{Forward, PathRewrite, Route, StrMatch, TemplateContext, WeightedCluster};
use crate::snapshot::Snapshot;
use crate::upstream::{Endpoint, Pick, Protocol};

use super::error::ProxyError;
use super::headers::{self, X_ENVOY_ORIGINAL_PATH, X_ENVOY_UPSTREAM_SERVICE_TIME};
use super::service::Conn;
use super::{Body, Shared};

#[allow(clippy::too_many_arguments)]
pub async fn forward(
    shared: &Shared,
    snapshot: &Snapshot,
    conn: Conn,
    route: &Route,
    action: &Forward,
    mut req: Request<Incoming>,
    authority: &str,
    path: &str,
    start: Instant,
) -> Result<Response<Body>, ProxyError> {
    let target = pick_weighted(action);
    let cluster_id = target.cluster.ok_or_else(|| ProxyError::NoCluster {
        key: target.key.clone(),
    })?;
    let cluster = &snapshot.clusters[cluster_id];
    if let Some(what) = &cluster.spec.unsupported {
        return Err(ProxyError::Unsupported { what: what.clone() });
    }
    let endpoint = match cluster.pick() {
        Pick::Endpoint(e) => e,
        Pick::NoHealthy => {
            return Err(ProxyError::NoHealthyUpstream {
                key: target.key.clone(),
            })
        }
        Pick::NoCluster => {
            return Err(ProxyError::NoCluster {
                key: target.key.clone(),
            })
        }
    };

    let websocket =
        req.version() == Version::HTTP_11 && headers::is_websocket_upgrade(req.headers());
    let downstream_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();

    // Path: rewrite, then the URI that addresses the chosen endpoint.
    let new_path = rewrite_path(route, action.rewrite.as_deref(), path);
    let mut pq = new_path.as_deref().unwrap_or(path).to_owned();
    if let Some(q) = parts.uri.query() {
        pq.push('?');
        pq.push_str(q);
    }
    let uri = Uri::builder()
        .scheme("http")
        .authority(endpoint.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|_| ProxyError::BadPath)?;

    // Templates like %REQ(x)% read the client's headers as they arrived; copy them only if needed.
    let dynamic = action.headers.request.is_dynamic()
        || action.headers.response.is_dynamic()
        || target.headers.request.is_dynamic()
        || target.headers.response.is_dynamic();
    let ctx_headers = if dynamic {
        parts.headers.clone()
    } else {
        http::HeaderMap::new()
    };
    let ctx = TemplateContext {
        remote: conn.peer,
        request_headers: &ctx_headers,
        hostname: &shared.hostname,
        start_time: "",
    };
    let h = &mut parts.headers;
    headers::prepare_request(h, conn.peer.ip(), websocket);
    if new_path.is_some() {
        if let Ok(v) = HeaderValue::from_str(parts.uri.path()) {
            h.insert(X_ENVOY_ORIGINAL_PATH, v);
        }
    }
    let host = target
        .host_rewrite
        .as_ref()
        .or(action.host_rewrite.as_ref());
    match host {
        Some(v) => h.insert(header::HOST, v.clone()),
        None => h.insert(
            header::HOST,
            HeaderValue::from_str(authority).map_err(|_| ProxyError::MissingHost)?,
        ),
    };
    action.headers.request.apply(h, &ctx);
    target.headers.request.apply(h, &ctx);

    let mut up_req = Request::from_parts(parts, body.map_err(Into::into).boxed_unsync());
    *up_req.uri_mut() = uri;
    let client = match cluster.spec.protocol {
        Protocol::Http1 => {
            *up_req.version_mut() = Version::HTTP_11;
            &shared.clients.http1
        }
        Protocol::Http2 => {
            *up_req.version_mut() = Version::HTTP_2;
            &shared.clients.http2
        }
    };

    let mut resp = client
        .request(up_req)
        .await
        .map_err(|e| classify(&e, &endpoint))?;
    let elapsed = HeaderValue::from(start.elapsed().as_millis() as u64);
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        if let Some(down) = downstream_upgrade {
            let up = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(down, up));
            resp.headers_mut()
                .insert(X_ENVOY_UPSTREAM_SERVICE_TIME, elapsed);
            return Ok(resp.map(|_| super::error::full(bytes::Bytes::new())));
        }
    }
    let (mut parts, body) = resp.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);
    parts.headers.insert(X_ENVOY_UPSTREAM_SERVICE_TIME, elapsed);
    action.headers.response.apply(&mut parts.headers, &ctx);
    target.headers.response.apply(&mut parts.headers, &ctx);
    Ok(Response::from_parts(
        parts,
        body.map_err(Into::into).boxed_unsync(),
    ))
}

/// Picks a destination at random, in proportion to its weight.
fn pick_weighted(action: &Forward) -> &WeightedCluster {
    if action.clusters.len() == 1 {
        return &action.clusters[0];
    }
    let mut n = rand::thread_rng().gen_range(0..action.total_weight);
    for c in &action.clusters {
        if n < u64::from(c.weight) {
            return c;
        }
        n -= u64::from(c.weight);
    }
    &action.clusters[action.clusters.len() - 1]
}

/// Applies `rewrite.uri` (replacing the part the route's path condition matched) or
/// `uriRegexRewrite`. `None` when the path is unchanged.
fn rewrite_path(route: &Route, rewrite: Option<&PathRewrite>, path: &str) -> Option<String> {
    match rewrite? {
        PathRewrite::Matched(new) => {
            let matched = match route.matcher.path.as_ref().map(|m| &m.kind) {
                Some(StrMatch::Prefix(p)) => p.len().min(path.len()),
                Some(StrMatch::Exact(_) | StrMatch::Regex(_)) => path.len(),
                // No uri condition behaves as prefix "/".
                None | Some(StrMatch::Present) => 1.min(path.len()),
            };
            Some(format!("{new}{}", &path[matched..]))
        }
        PathRewrite::Regex {
            pattern,
            replacement,
        } => Some(pattern.replace_all(path, replacement.as_str()).into_owned()),
    }
}

/// Copies bytes both ways between the client and the upstream after a 101.
async fn tunnel(down: hyper::upgrade::OnUpgrade, up: hyper::upgrade::OnUpgrade) {
    let (down, up) = match tokio::try_join!(down, up) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut down = TokioIo::new(down);
    let mut up = TokioIo::new(up);
    if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

/// Maps a client error to Envoy's failure kinds.
fn classify(e: &hyper_util::client::legacy::Error, endpoint: &Arc<Endpoint>) -> ProxyError {
    let addr = endpoint.addr;
    let mut source = e.source();
    let mut io_kind = None;
    let mut hyper_err = None;
    let mut detail = String::new();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
            if detail.is_empty() {
                detail = io.to_string();
            }
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            hyper_err.get_or_insert(h);
        }
        source = s.source();
    }
    if e.is_connect() {
        if io_kind == Some(std::io::ErrorKind::TimedOut)
            || detail.contains("timed out")
            || detail.contains("deadline")
        {
            return ProxyError::ConnectTimeout { endpoint: addr };
        }
        let detail = match io_kind {
            Some(std::io::ErrorKind::ConnectionRefused) => {
                "delayed connect error: Connection refused".to_owned()
            }
            _ if detail.is_empty() => "connection failure".to_owned(),
            _ => format!("delayed connect error: {detail}"),
        };
        return ProxyError::Connect {
            endpoint: addr,
            detail,
        };
    }
    if let Some(h) = hyper_err {
        if h.is_parse() || h.is_parse_status() {
            return ProxyError::Protocol {
                endpoint: addr,
                detail: h.to_string(),
            };
        }
        if let Some(h2) = h.source().and_then(|s| s.downcast_ref::<h2::Error>()) {
            if h2.is_reset() {
                return ProxyError::RemoteReset { endpoint: addr };
            }
        }
    }
    ProxyError::ConnectionTermination { endpoint: addr }
}
