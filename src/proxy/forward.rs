//! Forwarding a routed request: fault injection, a cluster picked by weight, then attempts in an
//! explicit retry loop under the route timeout (endpoint choice, circuit breakers, per-try
//! timeout, outlier accounting); mirrors get a copy on the side. The response streams back.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use http::{header, Request, Response, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::time::Instant;

use crate::route::{Forward, Route, TemplateContext, WeightedCluster};
use crate::snapshot::Snapshot;
use crate::upstream::{
    Cluster, Endpoint, LbPolicy, Pick, RequestHash, RespBody, RetryPermit, UpstreamBody,
    UpstreamError,
};

use super::body::{AttemptGuard, ClientBody, ClientFailed, Replay, ResponseBody};
use super::classify::{classify, upstream_error, Outcome};
use super::context::RequestCtx;
use super::error::{ProxyError, ResponseFlags};
use super::head::{AttemptHeaders, Head, HeadInput};
use super::headers::{self, X_ENVOY_UPSTREAM_SERVICE_TIME};
use super::mirror::{self, MirrorBody};
use super::request_body::RequestBody;
use super::retry::RetryState;
use super::timer::{OrNever, RouteTimer};
use super::{fault, Body};

/// Where each attempt's request body comes from.
enum Source {
    /// No body: every attempt sends an empty one.
    Empty,
    /// No retry and no mirror: the client's body streams once, without copying.
    Once(Option<Body>),
    /// Kept for replay (up to 1 MiB).
    Replay(Replay),
}

/// A successful attempt: response headers arrived.
struct Done {
    resp: Response<RespBody>,
    guard: AttemptGuard,
    flags: ResponseFlags,
}

type AttemptResult = Result<(Response<RespBody>, AttemptGuard), ProxyError>;

/// What a request is forwarded by: the route, its action, and the request's normalised authority
/// and path.
pub struct Target<'a> {
    pub route: &'a Route,
    pub action: &'a Forward,
    pub authority: String,
    pub path: String,
}

/// Everything the attempt loop needs that does not change between attempts.
struct Plan<'a> {
    cluster: &'a Cluster,
    action: &'a Forward,
    key: &'a Arc<str>,
    head: &'a Head,
    hash: Option<u64>,
    timer: &'a RouteTimer,
}

/// One request's forwarding future, boxed.
pub type Forwarding<'a> =
    Pin<Box<dyn Future<Output = Result<Response<Body>, ProxyError>> + Send + 'a>>;

/// Forwards a routed request: fault injection, then the attempts, then the response head.
///
/// Without a fault to inject, everything up to the first attempt is done here, before the
/// future is made: a future's state is sized by what it holds across its awaits, and the
/// whole state is copied when it is boxed.
pub fn forward<'a>(
    cx: &'a mut RequestCtx,
    snapshot: &'a Snapshot,
    t: Target<'a>,
    req: Request<RequestBody>,
) -> Forwarding<'a> {
    match &t.action.fault {
        // Rare: the request waits (or is refused) before anything else happens.
        Some(f) => Box::pin(async move {
            let flags = if fault::inject(f).await? {
                ResponseFlags::DI
            } else {
                ResponseFlags::default()
            };
            let prepared = prepare(cx, snapshot, t, req, flags)?;
            run(cx, prepared).await
        }),
        None => match prepare(cx, snapshot, t, req, ResponseFlags::default()) {
            Ok(prepared) => Box::pin(run(cx, prepared)),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        },
    }
}

/// A request ready for its first attempt.
struct Prepared<'a> {
    action: &'a Forward,
    target: &'a WeightedCluster,
    cluster: &'a Cluster,
    head: Head,
    /// The client's headers as they arrived, for response-side header templates.
    ctx_headers: http::HeaderMap,
    hash: RequestHash,
    source: Source,
    timer: RouteTimer,
    client_failed: ClientFailed,
    downstream_upgrade: Option<hyper::upgrade::OnUpgrade>,
    h2_downstream: bool,
    flags: ResponseFlags,
}

/// Picks the destination, builds the upstream head, sets up the body's source and the route
/// timer, and sends mirrors on their way.
fn prepare<'a>(
    cx: &mut RequestCtx,
    snapshot: &'a Snapshot,
    t: Target<'a>,
    mut req: Request<RequestBody>,
    flags: ResponseFlags,
) -> Result<Prepared<'a>, ProxyError> {
    let action = t.action;
    let target = pick_weighted(action);
    let cluster_id = target.cluster.ok_or_else(|| ProxyError::NoCluster {
        key: target.key.clone(),
    })?;
    let cluster = &snapshot.clusters[cluster_id];
    cx.cluster = Some(cluster.clone());

    let h2_downstream = req.version() == Version::HTTP_2;
    let websocket =
        req.version() == Version::HTTP_11 && headers::is_websocket_upgrade(req.headers());
    let downstream_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let hash = match &cluster.spec.lb {
        LbPolicy::ConsistentHash(h) => {
            h.key
                .hash(&parts.headers, parts.uri.query(), cx.conn.peer.ip())
        }
        LbPolicy::RoundRobin | LbPolicy::LeastRequest | LbPolicy::Random => RequestHash::default(),
    };

    let (mut head, ctx_headers) = Head::build(
        parts,
        &HeadInput {
            route: t.route,
            action,
            destination: target,
            peer: cx.conn.peer,
            hostname: &cx.shared.hostname,
            start_time: cx.start_time,
            authority: &t.authority,
            path: &t.path,
            websocket,
            scheme: cx.scheme,
            client_cert: cx.conn.tls.as_ref().and_then(|t| t.xfcc.as_ref()),
        },
    )?;
    // After the route's header operations, as Envoy's router injects the trace context last.
    crate::telemetry::trace::strip(&mut head.headers);
    head.added.extend(cx.trace.context.headers());
    cx.set_request_id(head.get(&headers::X_REQUEST_ID));

    let mirrored = !action.mirrors.is_empty();
    let client_failed = ClientFailed::default();
    let body = ClientBody::new(body, client_failed.clone(), cx.bytes_received.clone());
    let source = if http_body::Body::is_end_stream(&body) {
        Source::Empty
    } else if action.retry.num_retries == 0 && !mirrored && action.timeout.is_none() {
        Source::Once(Some(body.boxed_unsync()))
    } else {
        Source::Replay(Replay::new(body.boxed_unsync(), mirrored))
    };
    if mirrored {
        let body = match &source {
            Source::Replay(r) => r.progress().map_or(MirrorBody::Empty, MirrorBody::Pending),
            Source::Empty | Source::Once(_) => MirrorBody::Empty,
        };
        mirror::spawn(snapshot, &action.mirrors, &head, &body, action.timeout);
    }
    let timer = match &source {
        Source::Replay(r) => RouteTimer::after_body(action.timeout, r.ended()),
        Source::Empty | Source::Once(_) => RouteTimer::now(action.timeout),
    };
    Ok(Prepared {
        action,
        target,
        cluster,
        head,
        ctx_headers,
        hash,
        source,
        timer,
        client_failed,
        downstream_upgrade,
        h2_downstream,
        flags,
    })
}

/// The attempts, then the response head as the client gets it.
// An `async` block, not an `async fn`: the latter would keep its arguments twice.
#[allow(clippy::manual_async_fn)]
fn run<'a>(
    cx: &'a mut RequestCtx,
    mut p: Prepared<'a>,
) -> impl Future<Output = Result<Response<Body>, ProxyError>> + Send + 'a {
    async move {
        let plan = Plan {
            cluster: p.cluster,
            action: p.action,
            key: &p.target.key,
            head: &p.head,
            hash: p.hash.hash,
            timer: &p.timer,
        };
        let done = match attempts(cx, &plan, &mut p.source).await {
            Ok(done) => done,
            // However the upstream side reported it, a broken client body is the client's fault.
            Err(_) if p.client_failed.get() => return Err(ProxyError::DownstreamBody),
            Err(e) => return Err(e),
        };
        respond(cx, &mut p, done)
    }
}

/// The upstream response as the client gets it: hop-by-hop headers gone, the service time and
/// the route's response header operations added; an upgrade tunnelled.
fn respond(
    cx: &mut RequestCtx,
    p: &mut Prepared<'_>,
    done: Done,
) -> Result<Response<Body>, ProxyError> {
    let flags = p.flags | done.flags;
    let Done {
        mut resp, guard, ..
    } = done;
    let service_time = cx.start.elapsed().as_millis() as u64;
    cx.upstream_service_time = Some(service_time);
    let elapsed = crate::telemetry::text::number_value(service_time);
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        if let Some(down) = p.downstream_upgrade.take() {
            let up = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(down, up, guard));
            resp.headers_mut()
                .insert(X_ENVOY_UPSTREAM_SERVICE_TIME, elapsed);
            return Ok(resp.map(|_| super::error::full(bytes::Bytes::new())));
        }
    }
    let ctx = TemplateContext {
        remote: cx.conn.peer,
        request_headers: &p.ctx_headers,
        hostname: &cx.shared.hostname,
        start_time: cx.start_time,
    };
    let (mut parts, body) = resp.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);
    if p.h2_downstream {
        headers::detach_values(&mut parts.headers);
    }
    parts.headers.insert(X_ENVOY_UPSTREAM_SERVICE_TIME, elapsed);
    if let Some(cookie) = p.hash.set_cookie.take() {
        parts.headers.append(header::SET_COOKIE, cookie);
    }
    p.action.headers.response.apply(&mut parts.headers, &ctx);
    p.target.headers.response.apply(&mut parts.headers, &ctx);
    if !flags.is_empty() {
        parts.extensions.insert(flags);
    }
    let body = ResponseBody::new(body, p.timer.boxed(), guard);
    Ok(Response::from_parts(parts, BodyExt::boxed_unsync(body)))
}

/// The attempt loop: attempt, classify, account, then retry or finish. Records the attempt count
/// and the last endpoint in the request context.
async fn attempts(
    cx: &mut RequestCtx,
    plan: &Plan<'_>,
    source: &mut Source,
) -> Result<Done, ProxyError> {
    let (cluster, key, timer) = (plan.cluster, plan.key, plan.timer);
    let policy = &plan.action.retry;
    let mut retry = RetryState::new(policy);
    // Consistent-hash routes keep a key on its endpoint: no previous-hosts predicate.
    let avoid_tried = !matches!(cluster.spec.lb, LbPolicy::ConsistentHash(_));
    let mut permit: Option<RetryPermit> = None;
    let max = retry.max_attempts();
    for n in 1..=max {
        let exclude = if avoid_tried { retry.exclude() } else { &[] };
        // One `attempt` call site (awaited at most twice): its future is the largest part of
        // the request's, and two call sites would each keep their own.
        let mut fresh: Option<Arc<Endpoint>> = None;
        let (result, endpoint) = loop {
            let body = source.attempt(n);
            let (result, endpoint, stale) = attempt(plan, n, body, exclude, fresh.as_ref()).await;
            if stale
                && fresh.is_none()
                && endpoint.is_some()
                && idempotent(&plan.head.method)
                && source.replayable()
            {
                // The keep-alive race: a reused connection closed under an idempotent request
                // before any response byte. Sent again at once on a fresh connection to the same
                // endpoint; not a retry (no budget, no outlier accounting), as the upstream never
                // answered.
                fresh = endpoint;
                continue;
            }
            break (result, endpoint);
        };
        cx.attempts = n;
        if let Some(ep) = &endpoint {
            cx.upstream = Some(ep.addr);
        }
        let class = match &result {
            Ok((resp, _)) => classify(Outcome::Response(resp.status(), resp.headers())),
            Err(e) => classify(Outcome::Failed(e)),
        };
        if let Some(ep) = &endpoint {
            cluster.record(ep, &class);
            retry.tried(ep.addr);
        }
        if let Err(e @ ProxyError::UpstreamTimeout { .. }) = result {
            // The route timeout ends the request, retries or not.
            return Err(e);
        }
        let wants = retry.retriable(&class);
        if !wants || n == max || !source.replayable() {
            return finish(result, n, wants && n == max, false, permit);
        }
        // The previous retry (if any) is over; the next one needs its own slot.
        drop(permit.take());
        match cluster.try_retry() {
            Some(p) => permit = Some(p),
            None => return finish(result, n, false, true, permit),
        }
        drop(result);
        let wait = retry.next_backoff();
        tokio::select! {
            biased;
            () = timer.clone().expired() => {
                return Err(ProxyError::UpstreamTimeout {
                    after: timer.timeout().unwrap_or_default(),
                });
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
    // Not reached: the last attempt always finishes above.
    Err(ProxyError::NoHealthyUpstream { key: key.clone() })
}

/// The request's outcome after attempt `n`.
fn finish(
    result: AttemptResult,
    n: u32,
    exhausted: bool,
    retry_overflow: bool,
    permit: Option<RetryPermit>,
) -> Result<Done, ProxyError> {
    match result {
        Ok((resp, mut guard)) => {
            guard.retry = permit;
            let mut flags = ResponseFlags::default();
            if exhausted {
                flags |= ResponseFlags::URX;
            }
            if retry_overflow {
                flags |= ResponseFlags::UO;
            }
            Ok(Done { resp, guard, flags })
        }
        Err(e) if n > 1 || exhausted || retry_overflow => Err(ProxyError::Retried {
            last: Box::new(e),
            attempts: n,
            exhausted,
            retry_overflow,
        }),
        Err(e) => Err(e),
    }
}

/// One attempt: pick an endpoint, pass the circuit breakers, send, wait for response headers
/// within the per-try timeout and the route timeout. Returns the endpoint used, if any, and
/// whether the failure was a reused connection closing under the request (`UpstreamError::Stale`).
/// `fresh`: send to this endpoint on a new connection instead of picking one.
async fn attempt(
    plan: &Plan<'_>,
    n: u32,
    body: UpstreamBody,
    exclude: &[SocketAddr],
    fresh: Option<&Arc<Endpoint>>,
) -> (AttemptResult, Option<Arc<Endpoint>>, bool) {
    let Plan {
        cluster,
        key,
        head,
        hash,
        timer,
        ..
    } = *plan;
    let per_try_timeout = plan.action.retry.per_try_timeout;
    let endpoint = match fresh
        .cloned()
        .map_or_else(|| cluster.pick(hash, exclude), Pick::Endpoint)
    {
        Pick::Endpoint(e) => e,
        Pick::NoHealthy => {
            return (
                Err(ProxyError::NoHealthyUpstream { key: key.clone() }),
                None,
                false,
            )
        }
        Pick::NoCluster => return (Err(ProxyError::NoCluster { key: key.clone() }), None, false),
    };
    let mut stale = false;
    let started = Instant::now();
    let per_try = per_try_timeout.map(|t| started + t);
    // Per-try timeout if set, else what remains of the route timeout (`None`: no timeout yet).
    let until = match (per_try, timer.deadline()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let result = {
        // Pinned where it is made, and raced by reference: `select!` would otherwise move the
        // whole future into its own state.
        let send = std::pin::pin!(async {
            let admission = cluster
                .admit()
                .await
                .map_err(|_| ProxyError::Overflow { key: key.clone() })?;
            let active = endpoint.start_request();
            let expected = until.map(|u| u.saturating_duration_since(Instant::now()));
            let extra = AttemptHeaders::new(n, expected);
            let resp = match cluster
                .client()
                .request(
                    endpoint.addr,
                    &head.outgoing(&endpoint, &extra),
                    body,
                    fresh.is_some(),
                )
                .await
            {
                Ok(resp) => resp,
                Err(e) => {
                    stale = matches!(e, UpstreamError::Stale);
                    return Err(upstream_error(&e, endpoint.addr));
                }
            };
            if ambiguous_response(&resp) {
                // Dropping the response unread also keeps its connection out of the pool.
                return Err(ProxyError::Protocol {
                    endpoint: endpoint.addr,
                    detail: "response with both content-length and transfer-encoding".into(),
                });
            }
            Ok((
                resp,
                AttemptGuard {
                    _admission: admission,
                    _active: active,
                    retry: None,
                },
            ))
        });
        // Boxed when set, so that a request without timeouts does not carry two timers' state.
        let route_expired = OrNever(timer.boxed());
        let per_try_expired = OrNever(per_try.map(|t| Box::pin(tokio::time::sleep_until(t))));
        // The route timeout wins a tie: it is never retried.
        tokio::select! {
            biased;
            () = route_expired => Err(ProxyError::UpstreamTimeout {
                after: started.elapsed(),
            }),
            () = per_try_expired => Err(ProxyError::PerTryTimeout {
                after: started.elapsed(),
            }),
            r = send => r,
        }
    };
    (result, Some(endpoint), stale)
}

/// Methods a server may receive twice with the effect of once (RFC 9110 §9.2.2).
fn idempotent(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

/// An HTTP/1 response with both `content-length` and `transfer-encoding`: hyper reads it as
/// chunked, another hop might not (Envoy answers 502 and closes the upstream connection).
fn ambiguous_response(resp: &Response<RespBody>) -> bool {
    // `transfer-encoding` first: a response rarely has it, so one lookup settles most.
    resp.version() <= Version::HTTP_11
        && resp.headers().contains_key(header::TRANSFER_ENCODING)
        && resp.headers().contains_key(header::CONTENT_LENGTH)
}

// === impl Source ===

impl Source {
    /// The body for attempt `n`.
    fn attempt(&mut self, n: u32) -> UpstreamBody {
        match self {
            Source::Empty => Empty::new().map_err(|e| match e {}).boxed_unsync(),
            Source::Once(body) => body
                .take()
                .unwrap_or_else(|| Empty::new().map_err(|e| match e {}).boxed_unsync()),
            Source::Replay(r) => BodyExt::boxed_unsync(r.body(n)),
        }
    }

    /// Can a further attempt send the whole body again?
    fn replayable(&self) -> bool {
        match self {
            Source::Empty => true,
            Source::Once(body) => body.is_some(),
            Source::Replay(r) => r.replayable(),
        }
    }
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

/// Copies bytes both ways between the client and the upstream after a 101. The attempt's guard
/// (circuit-breaker slot, in-flight count) lives as long as the tunnel.
async fn tunnel(
    down: hyper::upgrade::OnUpgrade,
    up: hyper::upgrade::OnUpgrade,
    _guard: AttemptGuard,
) {
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
