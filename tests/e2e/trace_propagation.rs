//! Trace propagation through the real gateway to a real upstream that echoes the headers it got:
//! W3C and B3 (single and multi) in are continued with the gateway's span as parent; no context in
//! starts one sampled per `--trace-sampling` (or forced by `x-client-trace-id`); malformed headers
//! start a new trace and are never forwarded; `x-request-id` is kept; the JSON access log carries
//! the trace id.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use meshgate::telemetry::{Format, Sink};
use support::Upstream;
use support::{eventually, gateway_yaml, service_at, virtual_service, Client, Reply, TestGateway};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const HOST: &str = "shop.example.com";

async fn start(up: &Upstream, sampling: f64, log: Option<Arc<Mutex<Vec<u8>>>>) -> TestGateway {
    let yaml = gateway_yaml(&["*"])
        + &service_at("traced.svc", "HTTP", &[up.addr])
        + &virtual_service(
            "  - name: api\n    match: [{uri: {prefix: /api}}]\n    route: [{destination: {host: traced.svc}}]\n",
        );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    TestGateway::try_start_with(dir, |s| {
        s.tracing.sampling = sampling;
        s.access_log = log.map(|buf| (Format::Json, Sink::Memory(buf)));
    })
    .await
    .expect("start")
}

async fn send(c: &Client, headers: &[(&str, &str)]) -> Reply {
    let mut req = c.request(HOST, "/api/items");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = c.send(req.body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

/// A `traceparent` the upstream saw, split and checked for the W3C format: version 00, 32 and 16
/// lowercase hex digits (not all zero), flags 00 or 01.
fn traceparent(r: &Reply) -> (String, String, String) {
    let tp = r.field("h:traceparent").expect("traceparent upstream");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    let lower_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && s.bytes().any(|b| b != b'0')
    };
    assert_eq!(parts[0], "00", "{tp}");
    assert!(lower_hex(parts[1], 32), "trace id {tp}");
    assert!(lower_hex(parts[2], 16), "parent id {tp}");
    assert!(parts[3] == "00" || parts[3] == "01", "flags {tp}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

fn no_b3(r: &Reply) -> bool {
    [
        "h:b3",
        "h:x-b3-traceid",
        "h:x-b3-spanid",
        "h:x-b3-parentspanid",
        "h:x-b3-sampled",
        "h:x-b3-flags",
    ]
    .iter()
    .all(|h| r.field(h).is_none())
}

#[tokio::test]
async fn w3c_in_continues_the_trace_with_a_new_parent_and_keeps_tracestate() {
    let up = Upstream::start("a").await;
    // Sampling 0: the incoming sampled flag alone decides.
    let gw = start(&up, 0.0, None).await;
    for c in [Client::http1(gw.addr()), Client::h2c(gw.addr())] {
        let r = send(
            &c,
            &[
                ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
                ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
                ("x-request-id", "rid-w3c"),
            ],
        )
        .await;
        let (trace, parent, flags) = traceparent(&r);
        assert_eq!(trace, TRACE, "same trace");
        assert_ne!(parent, PARENT, "the gateway's own span is the parent");
        assert_eq!(flags, "01", "sampled flag kept");
        assert_eq!(
            r.field("h:tracestate"),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        assert!(no_b3(&r), "W3C in, W3C out:\n{}", r.body);
        assert_eq!(r.field("h:x-request-id"), Some("rid-w3c"));
    }

    // Not sampled stays not sampled, even at 100% sampling.
    let gw = start(&up, 100.0, None).await;
    let c = Client::http1(gw.addr());
    let r = send(&c, &[("traceparent", &format!("00-{TRACE}-{PARENT}-00"))]).await;
    let (trace, _, flags) = traceparent(&r);
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "00"));
    assert_eq!(r.field("h:tracestate"), None);
}

#[tokio::test]
async fn b3_multi_in_gives_b3_multi_out_with_the_gateway_as_parent() {
    let up = Upstream::start("a").await;
    let gw = start(&up, 0.0, None).await;
    let c = Client::http1(gw.addr());
    let r = send(
        &c,
        &[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", PARENT),
            ("x-b3-parentspanid", "0102030405060708"),
            ("x-b3-sampled", "1"),
            ("x-request-id", "rid-b3"),
        ],
    )
    .await;
    assert_eq!(r.field("h:x-b3-traceid"), Some(TRACE));
    assert_eq!(r.field("h:x-b3-parentspanid"), Some(PARENT));
    assert_eq!(r.field("h:x-b3-sampled"), Some("1"));
    let span = r.field("h:x-b3-spanid").unwrap();
    assert_ne!(span, PARENT);
    assert_eq!(span.len(), 16);
    assert_eq!(r.field("h:b3"), None);
    // The same span in W3C form, for W3C-speaking backends.
    let (trace, parent, flags) = traceparent(&r);
    assert_eq!(
        (trace.as_str(), parent.as_str(), flags.as_str()),
        (TRACE, span, "01")
    );
    assert_eq!(r.field("h:x-request-id"), Some("rid-b3"));

    // Deferred sampling (no x-b3-sampled): the gateway decides, and says so.
    let r = send(&c, &[("x-b3-traceid", TRACE), ("x-b3-spanid", PARENT)]).await;
    assert_eq!(r.field("h:x-b3-sampled"), Some("0"));
    assert_eq!(r.field("h:x-b3-parentspanid"), Some(PARENT));
}

#[tokio::test]
async fn b3_single_in_gives_b3_single_out_with_the_gateway_as_parent() {
    let up = Upstream::start("a").await;
    let gw = start(&up, 0.0, None).await;
    let c = Client::http1(gw.addr());
    let r = send(
        &c,
        &[("b3", &format!("{TRACE}-{PARENT}-1-0102030405060708"))],
    )
    .await;
    let b3 = r.field("h:b3").expect("b3 upstream");
    let parts: Vec<&str> = b3.split('-').collect();
    assert_eq!(parts.len(), 4, "{b3}");
    assert_eq!(parts[0], TRACE);
    assert_ne!(parts[1], PARENT);
    assert_eq!(parts[2], "1");
    assert_eq!(parts[3], PARENT, "the client's span is the parent");
    assert_eq!(r.field("h:x-b3-traceid"), None, "single in, single out");
    let (trace, parent, _) = traceparent(&r);
    assert_eq!((trace.as_str(), parent.as_str()), (TRACE, parts[1]));

    // 64-bit trace ids and debug pass through in their own form.
    let r = send(&c, &[("b3", &format!("a3ce929d0e0e4736-{PARENT}-d"))]).await;
    let b3 = r.field("h:b3").unwrap();
    assert!(b3.starts_with("a3ce929d0e0e4736-"), "{b3}");
    assert!(b3.ends_with(&format!("-d-{PARENT}")), "{b3}");
    let (trace, _, flags) = traceparent(&r);
    assert_eq!(trace, "0000000000000000a3ce929d0e0e4736");
    assert_eq!(flags, "01", "debug is sampled");
}

#[tokio::test]
async fn no_context_in_starts_a_trace_sampled_per_the_flag() {
    let up = Upstream::start("a").await;
    let all = start(&up, 100.0, None).await;
    let c = Client::http1(all.addr());
    let first = send(&c, &[]).await;
    let (trace, span, flags) = traceparent(&first);
    assert_eq!(flags, "01");
    assert_eq!(first.field("h:x-b3-traceid"), Some(trace.as_str()));
    assert_eq!(first.field("h:x-b3-spanid"), Some(span.as_str()));
    assert_eq!(first.field("h:x-b3-sampled"), Some("1"));
    assert_eq!(first.field("h:x-b3-parentspanid"), None, "a root span");
    assert_eq!(first.field("h:tracestate"), None);
    assert_eq!(
        first.field("h:x-request-id").map(str::len),
        Some(36),
        "x-request-id generated as before"
    );
    let (second, _, _) = traceparent(&send(&c, &[]).await);
    assert_ne!(trace, second, "a new trace per request");

    let none = start(&up, 0.0, None).await;
    let c = Client::http1(none.addr());
    let r = send(&c, &[]).await;
    assert_eq!(traceparent(&r).2, "00");
    assert_eq!(r.field("h:x-b3-sampled"), Some("0"));
    // Envoy's client-forced trace; x-envoy-force-trace is internal and stripped at the edge.
    let r = send(&c, &[("x-client-trace-id", "client-1")]).await;
    assert_eq!(traceparent(&r).2, "01");
    assert_eq!(r.field("h:x-client-trace-id"), Some("client-1"));
    let r = send(&c, &[("x-envoy-force-trace", "true")]).await;
    assert_eq!(traceparent(&r).2, "00");
    assert_eq!(r.field("h:x-envoy-force-trace"), None);
}

#[tokio::test]
async fn malformed_context_starts_a_new_trace_and_is_never_forwarded() {
    let up = Upstream::start("a").await;
    let gw = start(&up, 0.0, None).await;
    let c = Client::http1(gw.addr());
    let upper = format!("00-{}-{PARENT}-01", TRACE.to_uppercase());
    let zeros = format!("00-{}-{PARENT}-01", "0".repeat(32));
    let cases: [&[(&str, &str)]; 6] = [
        &[("traceparent", "garbage"), ("tracestate", "a=1")],
        &[("traceparent", &upper)],
        &[("traceparent", &zeros)],
        &[("b3", "not-a-b3-header")],
        &[("x-b3-traceid", TRACE)],
        &[("x-b3-traceid", "xyz"), ("x-b3-spanid", "!!")],
    ];
    for headers in cases {
        let r = send(&c, headers).await;
        let (trace, _, flags) = traceparent(&r);
        assert_ne!(trace, TRACE.to_string(), "{headers:?}");
        assert_ne!(trace, "0".repeat(32));
        assert_eq!(flags, "00", "{headers:?}");
        assert_eq!(r.field("h:tracestate"), None, "{headers:?}");
        for (k, v) in headers {
            assert_ne!(r.field(&format!("h:{k}")), Some(*v), "{k} forwarded as is");
        }
    }
    // A B3 style that arrived malformed is answered in that style, with the new trace.
    let r = send(&c, &[("b3", "not-a-b3-header")]).await;
    let (trace, span, _) = traceparent(&r);
    assert_eq!(r.field("h:b3"), Some(format!("{trace}-{span}-0").as_str()));
}

#[tokio::test]
async fn json_access_log_has_the_trace_id() {
    let up = Upstream::start("a").await;
    let buf = Arc::new(Mutex::new(Vec::new()));
    let gw = start(&up, 0.0, Some(buf.clone())).await;
    let c = Client::http1(gw.addr());
    send(&c, &[("traceparent", &format!("00-{TRACE}-{PARENT}-01"))]).await;
    let r = send(&c, &[]).await;
    let (fresh, _, _) = traceparent(&r);
    let lines = || -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&buf.lock().unwrap())
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert!(eventually(Duration::from_secs(10), || lines().len() >= 2).await);
    let all = lines();
    assert_eq!(all[0]["trace_id"], TRACE);
    assert_eq!(all[1]["trace_id"], fresh.as_str());
}
