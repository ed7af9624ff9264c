//! OTLP/HTTP span export (`--otlp-endpoint`) to a real collector on 127.0.0.1 that decodes each
//! body with the official OpenTelemetry protobuf definitions: one SERVER span per sampled
//! request, carrying the trace id the upstream saw, the client's span as parent, the gateway's
//! span id (the upstream's parent) and Envoy's tags; unsampled requests export nothing.

use crate::support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};
use prost::Message as _;
use support::{closed_addr, eventually, gateway_yaml, service_at, virtual_service, Client, Reply};
use support::{TestGateway, Upstream};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const HOST: &str = "shop.example.com";

/// One export request as the collector received it.
#[derive(Debug, Clone)]
struct Export {
    method: String,
    path: String,
    content_type: String,
    service_name: String,
    spans: Vec<Span>,
}

/// A minimal OTLP/HTTP collector: decodes `ExportTraceServiceRequest` bodies, answers 200 with an
/// empty `ExportTraceServiceResponse`.
struct Collector {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Export>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let got = got.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let got = got.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: Request<Incoming>| {
                            let got = got.clone();
                            async move { Ok::<_, Infallible>(receive(req, &got).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        });
        Collector { addr, got, task }
    }

    fn endpoint(&self) -> http::Uri {
        format!("http://{}/v1/traces", self.addr).parse().unwrap()
    }

    fn exports(&self) -> Vec<Export> {
        self.got.lock().unwrap().clone()
    }

    fn spans(&self) -> Vec<Span> {
        self.exports().into_iter().flat_map(|e| e.spans).collect()
    }

    /// Waits (bounded) for the span of trace `trace_hex`.
    async fn span_of(&self, trace_hex: &str) -> Span {
        let want = hex(trace_hex);
        let found = eventually(Duration::from_secs(15), || {
            self.spans().iter().any(|s| s.trace_id == want)
        })
        .await;
        assert!(found, "no span for trace {trace_hex}: {:?}", self.spans());
        self.spans()
            .into_iter()
            .find(|s| s.trace_id == want)
            .unwrap()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(req: Request<Incoming>, got: &Mutex<Vec<Export>>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let decoded = ExportTraceServiceRequest::decode(body).expect("a valid OTLP protobuf body");
    let mut service_name = String::new();
    let mut spans = Vec::new();
    for rs in decoded.resource_spans {
        if let Some(r) = &rs.resource {
            service_name = string_attr(&r.attributes, "service.name").unwrap_or_default();
        }
        for ss in rs.scope_spans {
            spans.extend(ss.spans);
        }
    }
    got.lock().unwrap().push(Export {
        method,
        path,
        content_type,
        service_name,
        spans,
    });
    let reply = ExportTraceServiceResponse::default().encode_to_vec();
    Response::builder()
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(reply)))
        .unwrap()
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

fn attr(span: &Span, key: &str) -> Option<String> {
    string_attr(&span.attributes, key)
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

async fn start(up: &Upstream, collector: &Collector) -> TestGateway {
    let yaml = gateway_yaml(&["*"])
        + &service_at("traced.svc", "HTTP", &[up.addr])
        + &service_at("down.svc", "HTTP", &[closed_addr()])
        + &virtual_service(
            "  - name: api\n    match: [{uri: {prefix: /api}}]\n    route: [{destination: {host: traced.svc}}]\n  - name: down\n    match: [{uri: {prefix: /down}}]\n    retries: {attempts: 0}\n    route: [{destination: {host: down.svc}}]\n",
        );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    let endpoint = collector.endpoint();
    TestGateway::try_start_with(dir, |s| {
        // Only what the client marks sampled is exported.
        s.tracing.sampling = 0.0;
        s.tracing.otlp_endpoint = Some(endpoint);
    })
    .await
    .expect("start")
}

async fn get(c: &Client, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = c.request(HOST, path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    c.send(req.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test]
async fn sampled_requests_are_exported_as_server_spans() {
    let up = Upstream::start("a").await;
    let collector = Collector::start().await;
    let gw = start(&up, &collector).await;
    let c = Client::http1(gw.addr());

    // Not sampled first: nothing of it may reach the collector.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let r = get(
        &c,
        "/api/items",
        &[("traceparent", &format!("00-{unsampled}-{PARENT}-00"))],
    )
    .await;
    assert_eq!(r.status, 200);

    let r = get(
        &c,
        "/api/items?q=1",
        &[
            ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("x-request-id", "rid-otlp"),
            ("user-agent", "trace-test/1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let upstream_parent = r
        .field("h:traceparent")
        .unwrap()
        .split('-')
        .nth(2)
        .unwrap()
        .to_owned();

    let span = collector.span_of(TRACE).await;
    assert_eq!(
        span.parent_span_id,
        hex(PARENT),
        "the client's span is the parent"
    );
    assert_eq!(
        span.span_id,
        hex(&upstream_parent),
        "the gateway's span is the upstream request's parent"
    );
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(span.name, "default/vs/api");
    assert_eq!(span.trace_state, "congo=t61rcWkgMzE");
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    assert!(span.start_time_unix_nano > 0);
    assert_eq!(attr(&span, "http.method").as_deref(), Some("GET"));
    assert_eq!(
        attr(&span, "http.url").as_deref(),
        Some("http://shop.example.com/api/items?q=1")
    );
    assert_eq!(attr(&span, "http.status_code").as_deref(), Some("200"));
    assert_eq!(attr(&span, "http.protocol").as_deref(), Some("HTTP/1.1"));
    assert_eq!(
        attr(&span, "upstream_cluster").as_deref(),
        Some("outbound|80||traced.svc")
    );
    assert_eq!(attr(&span, "upstream_address"), Some(up.addr.to_string()));
    assert_eq!(attr(&span, "response_flags").as_deref(), Some("-"));
    assert_eq!(
        attr(&span, "guid:x-request-id").as_deref(),
        Some("rid-otlp")
    );
    assert_eq!(attr(&span, "user_agent").as_deref(), Some("trace-test/1"));
    assert_eq!(attr(&span, "component").as_deref(), Some("proxy"));
    assert!(attr(&span, "node_id").is_some_and(|n| !n.is_empty()));
    assert_eq!(attr(&span, "error"), None);
    assert!(span.status.is_none());

    let exports = collector.exports();
    let e = &exports[0];
    assert_eq!(e.method, "POST");
    assert_eq!(e.path, "/v1/traces");
    assert_eq!(e.content_type, "application/x-protobuf");
    assert_eq!(e.service_name, "istio-ingressgateway.istio-system");
    assert!(
        !collector
            .spans()
            .iter()
            .any(|s| s.trace_id == hex(unsampled)),
        "the unsampled request (finished first) was not exported"
    );
}

#[tokio::test]
async fn local_replies_and_failures_are_exported_too() {
    let up = Upstream::start("a").await;
    let collector = Collector::start().await;
    let gw = start(&up, &collector).await;
    let c = Client::http1(gw.addr());

    let not_found = "11111111111111111111111111111111";
    let r = get(
        &c,
        "/nope",
        &[("traceparent", &format!("00-{not_found}-{PARENT}-01"))],
    )
    .await;
    assert_eq!(r.status, 404);
    let span = collector.span_of(not_found).await;
    assert_eq!(span.name, "ingress", "no route: the default name");
    assert_eq!(attr(&span, "http.status_code").as_deref(), Some("404"));
    assert_eq!(attr(&span, "response_flags").as_deref(), Some("NR"));
    assert_eq!(attr(&span, "upstream_cluster"), None);

    // No context in, x-client-trace-id forces sampling; a 503 from a closed port is an error span.
    let r = get(&c, "/down", &[("x-client-trace-id", "forced")]).await;
    assert_eq!(r.status, 503);
    let spans = || {
        collector
            .spans()
            .into_iter()
            .filter(|s| attr(s, "http.status_code").as_deref() == Some("503"))
            .collect::<Vec<_>>()
    };
    assert!(eventually(Duration::from_secs(15), || !spans().is_empty()).await);
    let span = &spans()[0];
    assert_eq!(span.name, "default/vs/down");
    assert!(span.parent_span_id.is_empty(), "a root span");
    assert_eq!(attr(span, "response_flags").as_deref(), Some("UF"));
    assert_eq!(attr(span, "error").as_deref(), Some("true"));
    assert_eq!(
        span.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
}
