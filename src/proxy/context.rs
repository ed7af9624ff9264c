//! One request's facts as it moves through the path (`RequestCtx`), and its finish phase.
//!
//! The context is made when the request head arrives and filled in as the request is routed and
//! forwarded (route, cluster, endpoint, attempts, flags, reason). `finish` wraps the response
//! body; exactly once — when the body ends, fails, or is dropped because the client went away —
//! the request is recorded: Istio's metrics, Envoy's cluster counters, its trace span (when
//! sampled and exported), the access log line.
//! Plain data and one body wrapper; nothing here decides anything about the request.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, Version};
use http_body::{Body as _, Frame, SizeHint};
use tokio::time::Instant;

use crate::route::Route;
use crate::snapshot::Snapshot;
use crate::telemetry::access_log::Line;
use crate::telemetry::tracer::{protocol_name, Finished};
use crate::telemetry::{RequestTrace, Sample};
use crate::upstream::Cluster;

use super::error::ResponseFlags;
use super::{Body, BoxError, Shared};

/// Everything known about one request so far.
pub struct RequestCtx {
    pub shared: Arc<Shared>,
    pub conn: Conn,
    pub start: Instant,
    pub start_time: SystemTime,
    /// `http` or `https`.
    pub scheme: &'static str,
    pub grpc: bool,
    /// The snapshot the request is served from (loaded once, when routing starts).
    pub snapshot: Option<Arc<Snapshot>>,
    /// The matched route's name (`ns/vs/rule`).
    pub route_name: Option<Arc<str>>,
    pub cluster: Option<Arc<Cluster>>,
    /// The endpoint of the last attempt.
    pub upstream: Option<SocketAddr>,
    pub attempts: u32,
    pub flags: ResponseFlags,
    /// `%RESPONSE_CODE_DETAILS%`.
    pub details: &'static str,
    /// `x-envoy-upstream-service-time`, set when an upstream response's headers arrived.
    pub upstream_service_time: Option<u64>,
    /// Request body bytes read from the client (counted by the client body).
    pub bytes_received: Arc<AtomicU64>,
    /// What the access log shows of the request; only kept when the access log is on.
    pub log: Option<LogFacts>,
    /// The trace context (sent upstream) and what the request's span reports.
    pub trace: RequestTrace,
}

/// The request as the client sent it, for the access log.
pub struct LogFacts {
    pub method: Method,
    pub version: Version,
    /// Path and query as sent.
    pub path: Box<str>,
    pub authority: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
    pub forwarded_for: Option<HeaderValue>,
    pub request_id: Option<HeaderValue>,
}

impl RequestCtx {
    pub fn new(
        shared: Arc<Shared>,
        conn: Conn,
        req: &http::Request<super::request_body::RequestBody>,
    ) -> Self {
        let h = req.headers();
        let log = shared.access_log.is_some().then(|| LogFacts {
            method: req.method().clone(),
            version: req.version(),
            path: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .into(),
            authority: req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .or_else(|| h.get(http::header::HOST).cloned()),
            user_agent: h.get(http::header::USER_AGENT).cloned(),
            forwarded_for: h.get(&super::headers::X_FORWARDED_FOR).cloned(),
            request_id: h.get(&super::headers::X_REQUEST_ID).cloned(),
        });
        let trace = shared.tracer.start(req);
        let scheme = if conn.tls.is_some() { "https" } else { "http" };
        RequestCtx {
            shared,
            conn,
            start: Instant::now(),
            start_time: SystemTime::now(),
            scheme,
            grpc: is_grpc(h),
            snapshot: None,
            route_name: None,
            cluster: None,
            upstream: None,
            attempts: 0,
            flags: ResponseFlags::default(),
            details: "",
            upstream_service_time: None,
            bytes_received: Arc::default(),
            log,
            trace,
        }
    }

    pub fn set_route(&mut self, route: &Route) {
        self.route_name = Some(route.name.clone());
    }

    /// The request id sent upstream (generated when the client sent none), for the log.
    pub fn set_request_id(&mut self, id: Option<&HeaderValue>) {
        if let Some(log) = &mut self.log {
            log.request_id = id.cloned();
        }
        self.trace.set_request_id(id);
    }
}

/// Wraps the response body so the request is recorded once it ends.
pub fn finish(resp: Response<Body>, mut cx: RequestCtx) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    if let Some(flags) = parts.extensions.get::<ResponseFlags>() {
        cx.flags |= *flags;
    }
    if cx.details.is_empty() {
        cx.details = if cx.upstream.is_some() {
            "via_upstream"
        } else {
            "direct_response"
        };
    }
    let finishing = Finishing {
        inner: body,
        state: Some(Finish {
            status: parts.status.as_u16(),
            grpc_status: grpc_status(&parts.headers),
            sent: 0,
            cx,
        }),
    };
    Response::from_parts(parts, http_body_util::BodyExt::boxed_unsync(finishing))
}

fn grpc_status(headers: &HeaderMap) -> Option<u16> {
    headers
        .get(&super::headers::GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

struct Finish {
    cx: RequestCtx,
    status: u16,
    grpc_status: Option<u16>,
    sent: u64,
}

/// The response body, counted; records the request when it ends.
struct Finishing {
    inner: Body,
    /// Inline, not boxed: `Finishing` itself is boxed once (`Body`), which is enough.
    state: Option<Finish>,
}

impl http_body::Body for Finishing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(st) = self.state.as_mut() {
                    if let Some(d) = frame.data_ref() {
                        st.sent += d.len() as u64;
                    } else if let Some(t) = frame.trailers_ref() {
                        st.grpc_status = grpc_status(t).or(st.grpc_status);
                    }
                }
                if self.inner.is_end_stream() {
                    self.record(ResponseFlags::default(), None);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                // The upstream broke off mid-body (or the route timeout cut it).
                self.record(
                    ResponseFlags::UR,
                    Some("upstream_reset_after_response_started"),
                );
            }
            Poll::Ready(None) => self.record(ResponseFlags::default(), None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Finishing {
    fn record(&mut self, flags: ResponseFlags, details: Option<&'static str>) {
        if let Some(mut st) = self.state.take() {
            st.cx.flags |= flags;
            if let Some(d) = details {
                st.cx.details = d;
            }
            record(st);
        }
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        // Dropped before its end: the client went away (or the connection was torn down).
        let flags = if self.inner.is_end_stream() {
            ResponseFlags::default()
        } else {
            ResponseFlags::DC
        };
        self.record(flags, None);
    }
}

/// The finish phase: metrics, cluster counters, trace span, access log.
fn record(st: Finish) {
    let Finish {
        cx,
        status,
        grpc_status,
        sent,
    } = st;
    let shared = &cx.shared;
    let duration = cx.start.elapsed();
    // The common case (no flag) needs no allocation.
    let flags: std::borrow::Cow<'static, str> = if cx.flags.is_empty() {
        "-".into()
    } else {
        cx.flags.to_string().into()
    };
    let received = cx.bytes_received.load(Ordering::Relaxed);
    let destination = cx
        .cluster
        .as_ref()
        .map(|c| &c.telemetry)
        .unwrap_or(&shared.unknown_destination);
    shared.istio.record(&Sample {
        destination,
        grpc: cx.grpc,
        response_code: status,
        grpc_status,
        flags: &flags,
        flag_bits: cx.flags.bits(),
        duration_ms: duration.as_secs_f64() * 1000.0,
        request_bytes: received,
        response_bytes: sent,
    });
    if let Some(c) = &cx.cluster {
        c.stats.rq_total.increment(1);
        if cx.attempts > 1 {
            c.stats.rq_retry.increment(u64::from(cx.attempts - 1));
        }
        if cx.flags.contains(ResponseFlags::UT) {
            c.stats.rq_timeout.increment(1);
        }
        if cx.flags.contains(ResponseFlags::UO) {
            c.stats.rq_pending_overflow.increment(1);
        }
    }
    let cluster_key = cx.cluster.as_ref().map(|c| c.spec.key.as_str());
    shared.tracer.finish(
        &cx.trace,
        &Finished {
            start: cx.start_time,
            status,
            grpc_status,
            flags: &flags,
            route_name: cx.route_name.as_deref(),
            upstream_cluster: cluster_key,
            upstream_host: cx.upstream,
            peer: cx.conn.peer,
            bytes_received: received,
            bytes_sent: sent,
            node_id: &shared.hostname,
        },
    );
    if let (Some(log), Some(facts)) = (&shared.access_log, &cx.log) {
        fn s(v: &Option<HeaderValue>) -> Option<&str> {
            v.as_ref().and_then(|v| v.to_str().ok())
        }
        log.log(&Line {
            start: Some(cx.start_time),
            method: facts.method.as_str(),
            path: &facts.path,
            protocol: protocol_name(facts.version),
            response_code: status,
            response_flags: &flags,
            response_code_details: cx.details,
            connection_termination_details: None,
            upstream_transport_failure_reason: None,
            bytes_received: received,
            bytes_sent: sent,
            duration_ms: duration.as_millis() as u64,
            upstream_service_time: cx.upstream_service_time,
            x_forwarded_for: s(&facts.forwarded_for),
            user_agent: s(&facts.user_agent),
            request_id: s(&facts.request_id),
            authority: s(&facts.authority),
            upstream_host: cx.upstream,
            upstream_cluster: cluster_key,
            upstream_local_address: None,
            downstream_local_address: Some(cx.conn.local),
            downstream_remote_address: Some(cx.conn.peer),
            requested_server_name: cx.conn.tls.as_ref().and_then(|t| t.sni.as_deref()),
            route_name: cx.route_name.as_deref(),
            trace_id: Some(&cx.trace.context.trace_id_hex()),
        });
    }
}

/// The connection a request arrived on.
#[derive(Debug, Clone)]
pub struct Conn {
    pub peer: SocketAddr,
    /// The local socket address the client connected to.
    pub local: SocketAddr,
    /// The Gateway server port this listener serves (not the local socket port).
    pub gateway_port: u16,
    /// Set on an HTTPS port: the SNI (which picks the filter chain, so the route table) and the
    /// client certificate details.
    pub tls: Option<Arc<crate::tls::TlsFacts>>,
}

/// A gRPC request (`content-type: application/grpc…`): its local replies are trailers-only.
pub(super) fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}
