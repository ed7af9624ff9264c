//! One request, start to finish: take the snapshot, route, then redirect / answer / forward.
//! This is the place to read first: every step of the request path is a named call below.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Version};

use crate::route::{
    CorsDecision, Decision, DirectResponse, Redirect, RedirectPath, RedirectPort, RequestView,
    Route, RouteAction, TemplateContext,
};
use crate::snapshot::Snapshot;

use super::context::{self, Conn, RequestCtx};
use super::error::{local_reply, FramingError, ProxyError};
use super::request_body::RequestBody;
use super::{checks, forward, path, Body, OverloadLevel, Shared};

/// Envoy's `max_request_headers_kb` at an Istio gateway (60 KiB): checked exactly here, and the
/// listener sizes hyper's buffers and HTTP/2's header list limit from it.
pub(super) const MAX_HEADER_BYTES: usize = 60 * 1024;
/// Envoy's limit on the number of request headers.
pub(super) const MAX_HEADERS: usize = 100;

/// Handles one request. Never fails: every error becomes Envoy's local reply. `ambiguous`: what
/// the connection's framing scanner found wrong with this request's framing, if anything.
///
/// A function returning an `async` block rather than an `async fn`: an `async fn` keeps its
/// arguments twice in its state (as arguments and as the locals they are moved into), and the
/// state is copied whole when the caller boxes it.
pub fn handle(
    shared: Arc<Shared>,
    conn: Conn,
    req: Request<RequestBody>,
    ambiguous: Option<FramingError>,
) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send {
    let mut cx = RequestCtx::new(shared, conn, &req);
    async move {
        let mut cors = None;
        let overloaded = cx.shared.overload.level() >= OverloadLevel::Shed;
        let routed = match ambiguous {
            Some(kind) => Err(ProxyError::Framing { kind }),
            // Envoy's `stop_accepting_requests`: answered before routing.
            None if overloaded => Err(ProxyError::Overloaded),
            None => match checks(&req) {
                Err(e) => Err(e),
                Ok(()) => {
                    let snapshot = cx.shared.snapshot.load_full();
                    cx.snapshot = Some(snapshot.clone());
                    let routed = route_request(&mut cx, &snapshot, req, &mut cors);
                    match routed {
                        Ok(Routed::Reply(resp)) => Ok(resp),
                        Ok(Routed::Forward(forwarding)) => forwarding.await,
                        Err(e) => Err(e),
                    }
                }
            },
        };
        let mut resp = match routed {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!(error = %e, flags = %e.response_flags(), "local reply");
                cx.details = e.details();
                if cx.grpc {
                    e.into_grpc_response()
                } else {
                    e.into_response()
                }
            }
        };
        if let Some(cors) = cors {
            // Envoy's CORS filter sets these on every response, the gateway's own replies included.
            resp.headers_mut().extend(cors);
        }
        if let Some(server) = &cx.shared.server_header {
            resp.headers_mut().insert(header::SERVER, server.clone());
        }
        if cx.shared.draining() || overloaded {
            // Draining: tell HTTP/1 clients to go elsewhere (HTTP/2 ones get a GOAWAY).
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Ok(context::finish(resp, cx))
    }
}

/// What routing decided.
enum Routed<'a> {
    /// Answered at the gateway (direct response, redirect, CORS preflight).
    Reply(Response<Body>),
    /// To an upstream: the (boxed) forwarding future.
    Forward(forward::Forwarding<'a>),
}

/// The checks made before routing: HTTP/1.0, the request head, Envoy's header size limit.
fn checks(req: &Request<RequestBody>) -> Result<(), ProxyError> {
    if matches!(req.version(), Version::HTTP_10 | Version::HTTP_09) {
        return Err(ProxyError::Http10);
    }
    checks::check_head(req)?;
    // hyper's buffer limit is not an exact header limit; Envoy's is 60 KiB.
    if headers_too_large(req.headers()) {
        return Err(ProxyError::HeadersTooLarge);
    }
    Ok(())
}

/// Routes the request in `snapshot`: a reply made here, or the forwarding future.
fn route_request<'a>(
    cx: &'a mut RequestCtx,
    snapshot: &'a Snapshot,
    req: Request<RequestBody>,
    cors: &mut Option<HeaderMap>,
) -> Result<Routed<'a>, ProxyError> {
    // An HTTPS connection is routed by its filter chain's table (chosen by SNI, again in this
    // snapshot), a plain one by its port's.
    let table = match &cx.conn.tls {
        None => snapshot.table(cx.conn.gateway_port),
        Some(tls) => snapshot
            .tls_port(cx.conn.gateway_port)
            .and_then(|p| p.find(tls.sni.as_deref()))
            .map(|chain| &chain.table),
    };
    let Some(table) = table else {
        return Err(ProxyError::NoRoute);
    };
    let authority: std::borrow::Cow<'_, str> = checks::authority(&req)?.into();
    let norm_path = path::normalize(req.uri().path()).map_err(|()| ProxyError::BadPath)?;
    let view = RequestView {
        method: req.method(),
        scheme: cx.scheme,
        authority: &authority,
        path: &norm_path,
        query: req.uri().query(),
        headers: req.headers(),
    };
    let route = match table.find(&view) {
        Decision::NoRoute => return Err(ProxyError::NoRoute),
        Decision::RequireTls => return Ok(Routed::Reply(https_redirect(&authority, req.uri()))),
        Decision::Route(route) => route,
    };
    cx.set_route(route);
    let ctx = TemplateContext {
        remote: cx.conn.peer,
        request_headers: req.headers(),
        hostname: &cx.shared.hostname,
        start_time: cx.start_time,
    };
    match &*route.action {
        RouteAction::Direct(d) => Ok(Routed::Reply(direct_response(d, &ctx))),
        RouteAction::Redirect(r) => Ok(Routed::Reply(redirect(
            r,
            route,
            cx.scheme,
            &authority,
            &norm_path,
            req.uri().query(),
            &ctx,
        ))),
        RouteAction::Forward(f) => {
            match f
                .cors
                .as_ref()
                .map(|c| c.decide(req.method(), req.headers()))
            {
                Some(CorsDecision::Preflight(headers)) => {
                    return Ok(Routed::Reply(cors_preflight(headers)))
                }
                Some(CorsDecision::Allowed(headers)) => *cors = Some(headers),
                Some(CorsDecision::Pass) | None => {}
            }
            let target = forward::Target {
                route,
                action: f,
                authority: authority.into_owned(),
                path: norm_path.into_owned(),
            };
            // Boxed (by `forward`): the forwarding state machine is kilobytes, and every future
            // that held it inline would be copied whole each time it is moved.
            Ok(Routed::Forward(forward::forward(cx, snapshot, target, req)))
        }
    }
}

/// Over Envoy's 60 KiB header limit (431)?
pub(crate) fn headers_too_large(headers: &HeaderMap) -> bool {
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    bytes > MAX_HEADER_BYTES
}

/// A preflight answered at the gateway: 200, empty body (Envoy's CORS filter reply).
fn cors_preflight(headers: HeaderMap) -> Response<Body> {
    let mut resp = local_reply(StatusCode::OK, Bytes::new());
    resp.headers_mut().extend(headers);
    resp
}

fn direct_response(d: &DirectResponse, ctx: &TemplateContext<'_>) -> Response<Body> {
    let mut resp = local_reply(d.status, d.body.clone());
    d.headers.response.apply(resp.headers_mut(), ctx);
    resp
}

/// `tls.httpsRedirect`: 301 to `https://<host, :80 dropped><path?query>`.
fn https_redirect(authority: &str, uri: &http::Uri) -> Response<Body> {
    location_reply(
        StatusCode::MOVED_PERMANENTLY,
        &https_location(authority, uri),
    )
}

/// The `location` of a `tls.httpsRedirect` reply (also shown by the explainer).
pub(crate) fn https_location(authority: &str, uri: &http::Uri) -> String {
    let host = authority.strip_suffix(":80").unwrap_or(authority);
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("https://{host}{pq}")
}

/// Builds the `location` reply of a VirtualService redirect the way Envoy does. `req_scheme`:
/// `http` or `https`, the request's.
pub fn redirect(
    r: &Redirect,
    route: &Route,
    req_scheme: &str,
    authority: &str,
    path: &str,
    query: Option<&str>,
    ctx: &TemplateContext<'_>,
) -> Response<Body> {
    let location = redirect_location(r, route, req_scheme, authority, path, query);
    let mut resp = location_reply(r.code, &location);
    r.headers.response.apply(resp.headers_mut(), ctx);
    resp
}

/// Builds the `location` of a VirtualService redirect the way Envoy does (also shown by the
/// explainer). `path` is the normalised path.
pub(crate) fn redirect_location(
    r: &Redirect,
    route: &Route,
    req_scheme: &str,
    authority: &str,
    path: &str,
    query: Option<&str>,
) -> String {
    let scheme = r.scheme.as_deref().unwrap_or(req_scheme);
    let (req_host, req_port) = split_host_port(authority);
    let host = r.authority.as_deref().unwrap_or(req_host);
    let port: Option<u16> = match r.port {
        RedirectPort::Explicit(p) => Some(p),
        RedirectPort::ProtocolDefault => None,
        RedirectPort::Keep => {
            if r.authority.is_some() {
                None
            } else {
                // Drop the request's port when the scheme changes and it was the old default.
                req_port.filter(|p| !(scheme != req_scheme && *p == default_port(req_scheme)))
            }
        }
    };
    let port = port.filter(|p| *p != default_port(scheme));
    let new_path: std::borrow::Cow<'_, str> = match &r.path {
        RedirectPath::Keep => path.into(),
        RedirectPath::Replace(p) => p.as_ref().into(),
        RedirectPath::Prefix(p) => {
            let rest = path.get(route.matcher.matched_len(path)..).unwrap_or("");
            format!("{p}{rest}").into()
        }
    };
    let mut location = format!("{scheme}://{host}");
    if let Some(p) = port {
        location.push_str(&format!(":{p}"));
    }
    location.push_str(&new_path);
    let uri_has_query = matches!(&r.path, RedirectPath::Replace(p) if p.contains('?'));
    if let (Some(q), false) = (query, uri_has_query) {
        location.push('?');
        location.push_str(q);
    }
    location
}

fn location_reply(code: StatusCode, location: &str) -> Response<Body> {
    let mut resp = local_reply(code, Bytes::new());
    match HeaderValue::from_str(location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => *resp.status_mut() = StatusCode::BAD_REQUEST,
    }
    resp
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse() {
            Ok(port) if !h.is_empty() => (h, Some(port)),
            _ => (authority, None),
        },
        _ => (authority, None),
    }
}
