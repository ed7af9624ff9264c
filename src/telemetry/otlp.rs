//! OTLP/HTTP span export (`--otlp-endpoint`): finished spans go into a bounded queue, and one
//! background task posts them in batches as protobuf `ExportTraceServiceRequest`s (the official
//! OpenTelemetry definitions, `opentelemetry-proto`). Never blocks the request path: a full queue
//! drops the span and counts it. May not touch: routing, upstream state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message as _;
use tokio::sync::mpsc;

/// Spans waiting for the exporter task; past this, spans are dropped and counted.
pub const QUEUE: usize = 8192;
/// A batch is sent once it holds this many spans…
pub const BATCH: usize = 512;
/// …or this long after the last send, whichever comes first.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// One finished span, plain data; encoded to protobuf by the exporter task.
#[derive(Debug, Clone)]
pub struct SpanData {
    pub trace_id: u128,
    pub span_id: u64,
    pub parent_id: Option<u64>,
    pub tracestate: Option<String>,
    pub name: String,
    pub start: SystemTime,
    pub end: SystemTime,
    /// String attributes, as Envoy's tracers set tags.
    pub attributes: Vec<(&'static str, String)>,
    /// A 5xx (or failed gRPC) response: span status ERROR.
    pub error: bool,
}

/// The exporter's handle: a bounded queue to its task.
#[derive(Debug)]
pub struct Exporter {
    tx: mpsc::Sender<SpanData>,
    dropped: AtomicU64,
}

impl Exporter {
    /// Starts the exporter task (on the current tokio runtime) posting to `endpoint` with
    /// `service.name` = `service_name`.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(endpoint: Uri, service_name: &str) -> Exporter {
        let (tx, rx) = mpsc::channel(QUEUE);
        let resource = resource(service_name);
        tokio::spawn(run(rx, endpoint, resource));
        Exporter {
            tx,
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues a span; drops it (and counts it) when the queue is full.
    pub fn export(&self, span: SpanData) {
        if self.tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("meshgate_otlp_spans_dropped_total").increment(1);
        }
    }

    /// Spans dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn resource(service_name: &str) -> Resource {
    Resource {
        attributes: vec![kv("service.name", service_name.to_owned())],
        ..Default::default()
    }
}

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `Span.flags`: the W3C trace flags (sampled), and whether the parent is remote (bits 8 and 9).
const FLAGS_SAMPLED: u32 = 0x1;
const FLAGS_HAS_IS_REMOTE: u32 = 0x100;
const FLAGS_IS_REMOTE: u32 = 0x200;

fn to_proto(s: SpanData) -> Span {
    let remote = if s.parent_id.is_some() {
        FLAGS_IS_REMOTE
    } else {
        0
    };
    Span {
        trace_id: s.trace_id.to_be_bytes().to_vec(),
        span_id: s.span_id.to_be_bytes().to_vec(),
        trace_state: s.tracestate.unwrap_or_default(),
        parent_span_id: s
            .parent_id
            .map(|p| p.to_be_bytes().to_vec())
            .unwrap_or_default(),
        flags: FLAGS_SAMPLED | FLAGS_HAS_IS_REMOTE | remote,
        name: s.name,
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: nanos(s.start),
        end_time_unix_nano: nanos(s.end),
        attributes: s.attributes.into_iter().map(|(k, v)| kv(k, v)).collect(),
        status: s.error.then(|| Status {
            code: status::StatusCode::Error as i32,
            message: String::new(),
        }),
        ..Default::default()
    }
}

/// The protobuf body of one export request.
pub fn encode(spans: Vec<SpanData>, service_name: &str) -> Vec<u8> {
    encode_with(spans, &resource(service_name))
}

fn encode_with(spans: Vec<SpanData>, resource: &Resource) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "meshgate".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans: spans.into_iter().map(to_proto).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

/// The exporter task: batches spans and posts them until every sender is gone, then sends what
/// is left.
async fn run(mut rx: mpsc::Receiver<SpanData>, endpoint: Uri, resource: Resource) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut batch = Vec::with_capacity(BATCH);
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = tokio::select! {
            got = rx.recv() => match got {
                Some(span) => {
                    batch.push(span);
                    batch.len() >= BATCH
                }
                None => {
                    flush(&client, &endpoint, &resource, &mut batch).await;
                    return;
                }
            },
            _ = tick.tick() => !batch.is_empty(),
        };
        if due {
            flush(&client, &endpoint, &resource, &mut batch).await;
            tick.reset();
        }
    }
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Sends the batch (if any) and empties it.
async fn flush(
    client: &HttpClient,
    endpoint: &Uri,
    resource: &Resource,
    batch: &mut Vec<SpanData>,
) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len();
    let body = encode_with(std::mem::take(batch), resource);
    if post(client, endpoint, body).await {
        metrics::counter!("meshgate_otlp_spans_exported_total").increment(n as u64);
    }
}

/// Posts one export request; `false` (logged, counted) when it fails. Not retried.
async fn post(client: &HttpClient, endpoint: &Uri, body: Vec<u8>) -> bool {
    let req = Request::builder()
        .method(Method::POST)
        .uri(endpoint.clone())
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::new(Bytes::from(body)));
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "OTLP export request could not be built");
            return false;
        }
    };
    let sent = tokio::time::timeout(EXPORT_TIMEOUT, async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        // Read the body so the connection goes back to the pool.
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("collector answered {status}"))
        }
    })
    .await
    .unwrap_or_else(|_| Err("timed out".into()));
    match sent {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, endpoint = %endpoint, "OTLP export failed");
            metrics::counter!("meshgate_otlp_export_failures_total").increment(1);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    #[test]
    fn encodes_one_server_span_with_ids_and_attributes() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let body = encode(
            vec![SpanData {
                trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                span_id: 0xaaaa_bbbb_cccc_dddd,
                parent_id: Some(0x00f0_67aa_0ba9_02b7),
                tracestate: Some("a=1".into()),
                name: "default/vs/api".into(),
                start,
                end: start + Duration::from_millis(3),
                attributes: vec![("http.status_code", "503".into())],
                error: true,
            }],
            "istio-ingressgateway.istio-system",
        );
        let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let rs = &req.resource_spans[0];
        let service = &rs.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        let span = &rs.scope_spans[0].spans[0];
        assert_eq!(
            span.trace_id,
            hex("4bf92f3577b34da6a3ce929d0e0e4736"),
            "big-endian bytes of the hex id"
        );
        assert_eq!(span.parent_span_id, hex("00f067aa0ba902b7"));
        assert_eq!(span.kind, span::SpanKind::Server as i32);
        assert_eq!(span.trace_state, "a=1");
        assert_eq!(
            span.end_time_unix_nano - span.start_time_unix_nano,
            3_000_000
        );
        assert_eq!(span.flags, 0x301);
        assert_eq!(
            span.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
        let attr = &span.attributes[0];
        assert_eq!(attr.key, "http.status_code");
        assert_eq!(
            attr.value.as_ref().unwrap().value,
            Some(Value::StringValue("503".into()))
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        // No task drains this queue of one.
        let (tx, _rx) = mpsc::channel(1);
        let exporter = Exporter {
            tx,
            dropped: AtomicU64::new(0),
        };
        let span = SpanData {
            trace_id: 1,
            span_id: 1,
            parent_id: None,
            tracestate: None,
            name: "ingress".into(),
            start: SystemTime::UNIX_EPOCH,
            end: SystemTime::UNIX_EPOCH,
            attributes: Vec::new(),
            error: false,
        };
        exporter.export(span.clone());
        exporter.export(span.clone());
        exporter.export(span);
        assert_eq!(exporter.dropped(), 2);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
