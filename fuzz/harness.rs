//! What each fuzz target runs, shared with the stable test `tests/e2e/fuzz_replay.rs` (which replays
//! every seed and regression input through these same functions). Each function must return
//! normally on every input: a panic (including a failed invariant below) is a finding.
//! Depends only on `meshgate`, `http` and std, so both crates can include it by path.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use meshgate::compile::{self, Compiled, Options};
use meshgate::proxy::{
    authority_is_valid, check_head, normalize_path, prepare_request, redirect_response,
    request_authority, Added, Framing, Head, HeadInput, Scanner,
};
use meshgate::route::{Decision, RequestView, RouteAction, TemplateContext};

/// Path normalisation: never panics; an absolute result has no dot-segment (servlet path
/// parameters included) and normalising it again changes nothing.
pub fn path(data: &[u8]) {
    let Ok(p) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(n) = normalize_path(p) else {
        return;
    };
    if n.starts_with('/') {
        for seg in n.split('/') {
            let bare = seg.split(';').next().unwrap_or(seg);
            assert!(
                bare != "." && bare != "..",
                "dot-segment left in {n:?} (from {p:?})"
            );
        }
        let again = normalize_path(&n);
        assert_eq!(again.as_deref(), Ok(&*n), "not stable: {p:?} -> {n:?}");
    }
}

/// The wire scanner: never panics, and its verdict does not depend on how the bytes arrive.
/// The first byte picks the piece size.
pub fn framing(data: &[u8]) {
    let Some((&k, stream)) = data.split_first() else {
        return;
    };
    let whole = Framing::new();
    Scanner::new(whole.clone()).feed(stream);
    let pieces = Framing::new();
    let mut s = Scanner::new(pieces.clone());
    for piece in stream.chunks(usize::from(k % 17) + 1) {
        s.feed(piece);
    }
    assert_eq!(
        whole.flagged(),
        pieces.flagged(),
        "verdict depends on piece size"
    );
}

/// The config loader and compiler: any text comes back as a config or as errors.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (resources, _report) = meshgate::config::load_str(text, "fuzz.yaml", "default");
    let _ = compile::compile(&resources, &Options::default());
}

/// The fast YAML reader: whatever it reads, `yaml_serde` reads the same (values, scalar types,
/// documents), without an error.
pub fn yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        meshgate::config::fast_yaml::check_against_yaml_serde(text);
    }
}

/// The request side from a head: head checks, Host/:authority, path normalisation, the route
/// table (host lookup, every matcher kind), then the action: the upstream head (rewrites,
/// forwarding headers, header templates) or the redirect. Input: `METHOD TARGET` on the first
/// line, then `name: value` lines (raw bytes; invalid pieces are skipped).
pub fn request(data: &[u8]) {
    let Some(req) = parse_head(data) else {
        return;
    };
    let _ = check_head(&req);
    let authority = match request_authority(&req) {
        Ok(a) => {
            assert!(authority_is_valid(a), "accepted an invalid authority {a:?}");
            a.to_owned()
        }
        // The host table must cope with anything, so look up the raw value anyway.
        Err(_) => req
            .headers()
            .get("host")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default(),
    };
    let Ok(path) = normalize_path(req.uri().path()) else {
        return;
    };
    let path = path.into_owned();
    let mut prepared = req.headers().clone();
    let mut added = Added::new();
    prepare_request(&mut prepared, &mut added, PEER.ip(), false);
    let Some(table) = table() else {
        return;
    };
    let query = req.uri().query().map(str::to_owned);
    let view = RequestView {
        method: req.method(),
        scheme: "http",
        authority: &authority,
        path: &path,
        query: query.as_deref(),
        headers: req.headers(),
    };
    let route = match table.find(&view) {
        Decision::Route(route) => route,
        Decision::NoRoute | Decision::RequireTls => return,
    };
    let headers = req.headers().clone();
    let ctx = TemplateContext {
        remote: PEER,
        request_headers: &headers,
        hostname: "fuzz",
        start_time: std::time::SystemTime::UNIX_EPOCH,
    };
    match &*route.action {
        RouteAction::Forward(f) => {
            let Some(target) = f.clusters.first() else {
                return;
            };
            let (parts, ()) = req.into_parts();
            let _ = Head::build(
                parts,
                &HeadInput {
                    route,
                    action: f,
                    destination: target,
                    peer: PEER,
                    hostname: "fuzz",
                    start_time: std::time::SystemTime::UNIX_EPOCH,
                    authority: &authority,
                    path: &path,
                    websocket: false,
                    scheme: "http",
                    client_cert: None,
                },
            );
        }
        RouteAction::Redirect(r) => {
            let _ = redirect_response(r, route, "http", &authority, &path, query.as_deref(), &ctx);
        }
        RouteAction::Direct(d) => {
            let mut h = HeaderMap::new();
            d.headers.response.apply(&mut h, &ctx);
        }
    }
}

const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 4);

/// `METHOD TARGET` then `name: value` lines, up to an empty line.
fn parse_head(data: &[u8]) -> Option<Request<()>> {
    let mut lines = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next()?;
    let mut words = first.splitn(3, |&b| b == b' ');
    let method = Method::from_bytes(words.next()?).ok()?;
    let uri = Uri::try_from(words.next()?).ok()?;
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default().trim_ascii();
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            req.headers_mut().append(n, v);
        }
    }
    Some(req)
}

/// One route table with every matcher kind, rewrites, header templates and redirects.
pub fn table() -> Option<&'static meshgate::route::RouteTable> {
    static COMPILED: OnceLock<Option<Compiled>> = OnceLock::new();
    COMPILED
        .get_or_init(|| {
            let (resources, _) = meshgate::config::load_str(CONFIG, "fuzz.yaml", "default");
            compile::compile(&resources, &Options::default()).0
        })
        .as_ref()?
        .listeners
        .first()
        .map(|l| &l.table)
}

const CONFIG: &str = r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec:
  hosts: [a.svc]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: 1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop.example.com, "*.wild.test"]
  gateways: [gw]
  http:
  - match: [{uri: {exact: /Exact}, ignoreUriCase: true}]
    directResponse: {status: 200, body: {string: exact}}
    headers: {response: {set: {x-echo: "%REQ(x-a)%"}}}
  - match: [{uri: {prefix: /api/}, headers: {x-a: {prefix: v}, x-b: {regex: "[a-z]+"}}, queryParams: {q: {exact: "1"}}}]
    rewrite: {uri: /v2/}
    headers: {request: {set: {x-c: "%REQ(x-a)%", x-d: "%DOWNSTREAM_REMOTE_ADDRESS%"}, add: {x-e: "%HOSTNAME%"}, remove: [x-b]}}
    route: [{destination: {host: a.svc}}]
  - match: [{uri: {regex: "/r/[0-9]+/.*"}, method: {exact: POST}, withoutHeaders: {x-no: {}}}]
    redirect: {uri: /moved, scheme: https, redirectCode: 308}
  - match: [{uri: {prefix: /Pre}, ignoreUriCase: true}]
    redirect: {authority: other.test, port: 8443}
  - match: [{authority: {regex: ".*:8080"}, uri: {regex: "/x/(.*)"}}]
    rewrite: {uriRegexRewrite: {match: "/x/(.*)", rewrite: "/y/\\1"}, authority: rewritten.test}
    route: [{destination: {host: a.svc}, headers: {request: {add: {x-f: "%REQ(host)%"}}}}]
  - route: [{destination: {host: a.svc}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: any}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /}, headers: {x-present: {}}}]
    redirect: {uri: /elsewhere}
  - route: [{destination: {host: a.svc}}]
"#;
