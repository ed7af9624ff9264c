//! The gateway's tracer: decides each request's trace context when it arrives (`start`) and, for
//! sampled requests with `--otlp-endpoint` set, exports one SERVER span when it finishes
//! (`finish`), with the tags Envoy's tracers set. May not touch: routing, upstream state.

use std::net::SocketAddr;
use std::time::SystemTime;

use http::{HeaderValue, Request, Version};

use super::otlp::{Exporter, SpanData};
use super::trace::{Sampler, TraceContext, TraceSettings};

/// Decides trace contexts and exports spans.
#[derive(Debug)]
pub struct Tracer {
    sampler: Sampler,
    exporter: Option<Exporter>,
}

/// One request's trace: its context, and what its span reports (kept only when it is exported).
#[derive(Debug)]
pub struct RequestTrace {
    pub context: TraceContext,
    span: Option<Box<SpanFacts>>,
}

/// The request as the span shows it.
#[derive(Debug)]
struct SpanFacts {
    method: http::Method,
    /// `http://authority/path?query`, as the client sent it.
    url: String,
    version: Version,
    user_agent: Option<HeaderValue>,
    request_id: Option<HeaderValue>,
}

/// What the finish phase knows about a request, for its span.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    pub start: SystemTime,
    pub status: u16,
    pub grpc_status: Option<u16>,
    /// Envoy's response flags (`-` when none).
    pub flags: &'a str,
    pub route_name: Option<&'a str>,
    pub upstream_cluster: Option<&'a str>,
    pub upstream_host: Option<SocketAddr>,
    pub peer: SocketAddr,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Envoy's `node_id` tag: the gateway's host name.
    pub node_id: &'a str,
}

impl Tracer {
    /// A tracer sampling as `settings` say, exporting to `settings.otlp_endpoint` (if set) as
    /// `service.name` = `service_name`.
    ///
    /// # Panics
    /// With an OTLP endpoint, outside a tokio runtime.
    pub fn new(settings: &TraceSettings, service_name: &str) -> Tracer {
        Tracer {
            sampler: Sampler::new(settings.sampling),
            exporter: settings
                .otlp_endpoint
                .clone()
                .map(|e| Exporter::start(e, service_name)),
        }
    }

    /// The trace of a request that just arrived.
    pub fn start<B>(&self, req: &Request<B>) -> RequestTrace {
        let h = req.headers();
        let context = self.sampler.start(h);
        let span = (context.sampled && self.exporter.is_some()).then(|| {
            let authority = req
                .uri()
                .authority()
                .map(|a| a.as_str())
                .or_else(|| h.get(http::header::HOST).and_then(|v| v.to_str().ok()))
                .unwrap_or("");
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            Box::new(SpanFacts {
                method: req.method().clone(),
                url: format!("http://{authority}{pq}"),
                version: req.version(),
                user_agent: h.get(http::header::USER_AGENT).cloned(),
                request_id: h.get("x-request-id").cloned(),
            })
        });
        RequestTrace { context, span }
    }

    /// Exports the request's span if it is sampled and an exporter runs.
    pub fn finish(&self, trace: &RequestTrace, f: &Finished<'_>) {
        let (Some(exporter), Some(facts)) = (&self.exporter, &trace.span) else {
            return;
        };
        let cx = &trace.context;
        let s = |v: &Option<HeaderValue>| {
            v.as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        let mut attributes = vec![
            ("component", "proxy".to_owned()),
            ("node_id", f.node_id.to_owned()),
            ("guid:x-request-id", s(&facts.request_id)),
            ("http.method", facts.method.as_str().to_owned()),
            ("http.url", facts.url.clone()),
            ("http.protocol", protocol_name(facts.version).to_owned()),
            ("user_agent", s(&facts.user_agent)),
            ("downstream_cluster", "-".to_owned()),
            ("peer.address", f.peer.ip().to_string()),
            ("request_size", f.bytes_received.to_string()),
            ("response_size", f.bytes_sent.to_string()),
            ("http.status_code", f.status.to_string()),
            ("response_flags", f.flags.to_owned()),
        ];
        if let Some(c) = f.upstream_cluster {
            attributes.push(("upstream_cluster", c.to_owned()));
            attributes.push(("upstream_cluster.name", c.to_owned()));
        }
        if let Some(a) = f.upstream_host {
            attributes.push(("upstream_address", a.to_string()));
        }
        if let Some(g) = f.grpc_status {
            attributes.push(("grpc.status_code", g.to_string()));
        }
        // Envoy marks 5xx responses (and failed gRPC calls) as errors.
        let error = f.status >= 500 || f.grpc_status.is_some_and(|g| g != 0);
        if error {
            attributes.push(("error", "true".to_owned()));
        }
        exporter.export(SpanData {
            trace_id: cx.trace_id,
            span_id: cx.span_id,
            parent_id: cx.parent_id,
            tracestate: cx.tracestate.clone(),
            name: f.route_name.unwrap_or("ingress").to_owned(),
            start: f.start,
            end: SystemTime::now(),
            attributes,
            error,
        });
    }
}

impl RequestTrace {
    /// The `x-request-id` sent upstream (generated when the client sent none), for the span.
    pub fn set_request_id(&mut self, id: Option<&HeaderValue>) {
        if let Some(facts) = &mut self.span {
            facts.request_id = id.cloned();
        }
    }
}

/// `%PROTOCOL%`: `HTTP/1.1`, `HTTP/2`.
pub fn protocol_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}
