//! `meshgate explain` offline: the real binary on a config directory, its text and JSON output.

use crate::support;

use std::net::SocketAddr;
use std::process::Command;

use support::binary::BIN;
use support::explain::shop_config;

const A1: &str = "127.0.0.1:9001";
const A2: &str = "127.0.0.1:9002";
const B: &str = "127.0.0.1:9003";

fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        shop_config(80, addr(A1), addr(A2), addr(B)),
    )
    .unwrap();
    dir
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Asserts that `line` is one of stdout's lines.
    fn has(&self, line: &str) {
        assert!(
            self.stdout.lines().any(|l| l == line),
            "no line {line:?} in:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }
}

fn explain(dir: &std::path::Path, args: &[&str]) -> Out {
    let out = Command::new(BIN)
        .arg("explain")
        .arg("--config")
        .arg(dir)
        .args(args)
        .output()
        .expect("run meshgate explain");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn explains_a_forward_with_static_endpoints_and_policy() {
    let dir = config_dir();
    let o = explain(
        dir.path(),
        &["GET http://shop.example.com/cart/1", "-H", "x-canary: yes"],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines = o.lines();
    assert_eq!(lines[0], "request: GET http://shop.example.com/cart/1");
    o.has("  header x-canary: yes");
    o.has("listener: Gateway port 80");
    o.has("virtual host: shop.example.com (exact host)");
    o.has(r#"  0. VirtualService web/shop spec.http[0] (api) match[0]: no: uri prefix "/api" does not match "/cart/1""#);
    o.has("  1. VirtualService web/shop spec.http[1] (canary) match[0]: MATCH");
    assert!(
        lines.iter().any(|l| l.starts_with("chosen: ")
            && l.ends_with("config.yaml#5 VirtualService web/shop spec.http[1] (canary) match[0]")),
        "{}",
        o.stdout
    );
    o.has("result: forward");
    o.has("  destination outbound|80|v2|a.svc weight 1 (100.0%), lb ROUND_ROBIN");
    o.has(&format!("    endpoint {A2} weight 1"));
    o.has("  timeout: 3s");
    o.has("  retries: 4 on 5xx,connect-failure, per try timeout 1s");
    o.has("  cors: no");
    o.has("  fault: none");
    o.has("  mirrors: none");
    // Two arguments, METHOD and URL, work too.
    let o2 = explain(
        dir.path(),
        &[
            "GET",
            "http://shop.example.com/cart/1",
            "-H",
            "x-canary: yes",
        ],
    );
    assert_eq!(o2.stdout, o.stdout);
}

#[test]
fn explains_misses() {
    let dir = config_dir();
    let d = dir.path();

    // Header absent: the virtual host has no route for it.
    let o = explain(d, &["http://shop.example.com/cart/1"]);
    assert_eq!(o.code, 0);
    o.has("request: GET http://shop.example.com/cart/1");
    o.has(
        "  1. VirtualService web/shop spec.http[1] (canary) match[0]: no: header x-canary: absent",
    );
    o.has(r#"  6. VirtualService web/shop spec.http[6] (reviews) match[0]: no: uri prefix "/reviews" does not match "/cart/1""#);
    o.has("result: 404 NR: none of the 7 route(s) of virtual host shop.example.com matches");
    assert!(!o.stdout.contains("chosen:"), "{}", o.stdout);

    // Header with another value.
    let o = explain(d, &["http://shop.example.com/cart/1", "-H", "x-canary: no"]);
    o.has(r#"  1. VirtualService web/shop spec.http[1] (canary) match[0]: no: header x-canary exact "yes" does not match "no""#);

    // Method.
    let o = explain(d, &["DELETE http://shop.example.com/api/x"]);
    o.has(r#"  0. VirtualService web/shop spec.http[0] (api) match[0]: no: method exact "POST" does not match "DELETE""#);
    let o = explain(d, &["POST http://shop.example.com/api/x"]);
    o.has("  0. VirtualService web/shop spec.http[0] (api) match[0]: MATCH");
    o.has("  destination outbound|80||a.svc weight 1 (100.0%), lb ROUND_ROBIN");
    o.has(&format!("    endpoint {A1} weight 1"));
    o.has(&format!("    endpoint {A2} weight 1"));

    // Query.
    let o = explain(d, &["http://shop.example.com/search?q=2"]);
    o.has(r#"  2. VirtualService web/shop spec.http[2] (search) match[0]: no: query q exact "1" does not match "2""#);

    // No virtual host.
    let o = explain(d, &["http://nowhere.org/"]);
    o.has("listener: Gateway port 80");
    o.has(r#"result: 404 NR: no virtual host matches "nowhere.org""#);
    assert!(!o.stdout.contains("virtual host:"), "{}", o.stdout);

    // No listener on the URL's port.
    let o = explain(d, &["http://shop.example.com:8080/"]);
    o.has("listener: none for Gateway port 8080 (ports served: 80; the URL's port is the Gateway port)");
    o.has("result: connection refused (no listener)");

    // Rejected before routing.
    let o = explain(d, &["http://shop.example.com/a%00b"]);
    o.has("result: 400 DPE: bad request path (not normalisable, or %00 in it) (before routing)");
}

#[test]
fn explains_actions() {
    let dir = config_dir();
    let d = dir.path();

    // Wildcard virtual host, direct response.
    let o = explain(d, &["http://a.wild.example.com/w"]);
    o.has("virtual host: *.wild.example.com (wildcard suffix)");
    o.has("result: direct response 204 (0 byte body)");

    // Direct response; a bare path with --host.
    let o = explain(d, &["/search?q=1", "--host", "shop.example.com"]);
    o.has("request: GET http://shop.example.com/search?q=1");
    o.has("result: direct response 200 (5 byte body)");

    // Redirect, after path normalisation.
    let o = explain(d, &["http://shop.example.com/a/../old/x?y=1"]);
    o.has("normalized path: /old/x");
    o.has("result: redirect 301, location: http://shop.example.com/new?y=1");

    // Weighted split.
    let o = explain(d, &["http://shop.example.com/split"]);
    o.has("  destination outbound|80|v1|a.svc weight 80 (80.0%), lb ROUND_ROBIN");
    o.has(&format!("    endpoint {A1} weight 1"));
    o.has("  destination outbound|80||b.svc weight 20 (20.0%), lb LEAST_REQUEST");
    o.has(&format!("    endpoint {B} weight 1"));

    // Unknown subset.
    let o = explain(d, &["http://shop.example.com/nc"]);
    o.has("  destination outbound|80|nope|a.svc weight 1 (100.0%)");
    o.has("    no such cluster (unknown host, subset or port): 503 NC");

    // DNS destination: not resolved offline.
    let o = explain(d, &["http://shop.example.com/reviews"]);
    o.has("  destination outbound|80||reviews.web.svc.cluster.local weight 1 (100.0%), lb LEAST_REQUEST");
    o.has("    endpoints: not resolved offline (DNS reviews.web.svc.cluster.local:80, reviews:80)");
}

#[test]
fn json_output() {
    let dir = config_dir();
    let o = explain(
        dir.path(),
        &[
            "--json",
            "GET http://shop.example.com/split",
            "-H",
            "x-a: 1",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON");
    assert_eq!(v["request"]["headers"][0], "x-a: 1");
    assert_eq!(v["listener"], 80);
    assert_eq!(v["virtual_host"]["matched_by"], "exact");
    assert_eq!(v["routes"].as_array().unwrap().len(), 5);
    assert_eq!(v["routes"][4]["matched"], true);
    assert_eq!(v["chosen"]["rule"], "spec.http[4] (split)");
    assert_eq!(v["outcome"]["kind"], "forward");
    let d = &v["outcome"]["destinations"];
    assert_eq!(d[0]["cluster"], "outbound|80|v1|a.svc");
    assert_eq!(d[0]["endpoints"][0]["address"], A1);
    assert_eq!(d[0]["endpoints"][0]["health"], serde_json::Value::Null);
    assert_eq!(d[1]["percent"], 20.0);
    assert_eq!(v["outcome"]["policy"]["retries"]["attempts"], 2);
    assert_eq!(
        v["outcome"]["policy"]["timeout_ms"],
        serde_json::Value::Null
    );
}

#[test]
fn config_errors_and_bad_requests() {
    let dir = config_dir();
    // A broken VirtualService: reported, skipped, and the rest still explained.
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad, namespace: web}\nspec:\n  hosts: [bad.example.com]\n  gateways: [default/gw]\n  http:\n  - match: [{uri: {regex: \"[\"}}]\n    directResponse: {status: 200}\n",
    )
    .unwrap();
    let o = explain(dir.path(), &["http://a.wild.example.com/w"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("error: "), "{}", o.stderr);
    assert!(o.stderr.contains("VirtualService web/bad"), "{}", o.stderr);
    o.has("result: direct response 204 (0 byte body)");
    let o = explain(dir.path(), &["http://bad.example.com/"]);
    o.has(r#"result: 404 NR: no virtual host matches "bad.example.com""#);

    // Nothing compiles: exit 1.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("x.yaml"), "spec: [unclosed\n").unwrap();
    let o = explain(empty.path(), &["http://a/"]);
    assert_eq!(o.code, 1, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.is_empty());

    // A malformed request: exit 2.
    let o = explain(dir.path(), &["http://a/", "-H", "no-colon"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("bad header"), "{}", o.stderr);
}

#[test]
fn https_redirect_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n    tls: {httpsRedirect: true}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - directResponse: {status: 200}\n",
    )
    .unwrap();
    let o = explain(dir.path(), &["http://s.example.com/a?b=1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    o.has("virtual host: * (catch-all *)");
    o.has("result: 301 https redirect (tls.httpsRedirect), location: https://s.example.com/a?b=1");
}

/// HTTPS ports: the URL's host is the SNI that picks the filter chain (exact, wildcard), whose
/// route table then routes the request; no chain for the SNI, plain text to a TLS port and TLS
/// to a plain port get no response at all; `https://` defaults to Gateway port 443.
#[test]
fn https_urls_pick_the_filter_chain_by_sni() {
    use support::tls::{answering, gateway, https_server, Ca};
    let ca = Ca::new("explain ca");
    let dir = tempfile::tempdir().unwrap();
    let tls = |stem: &str, names: &[&str]| {
        let (c, k) = ca.server(names).write(dir.path(), stem);
        format!(
            "{{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}",
            c.display(),
            k.display()
        )
    };
    let yaml = gateway(
        "gw",
        &[
            https_server(
                443,
                "https-a",
                &["a.example.com"],
                &tls("a", &["a.example.com"]),
            ),
            https_server(
                443,
                "https-w",
                &["*.wild.example"],
                &tls("w", &["*.wild.example"]),
            ),
            "{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}".into(),
        ],
    ) + &answering("a", &["a.example.com"], &["gw"], "a")
        + &answering("w", &["*.wild.example"], &["gw"], "w")
        + &answering("plain", &["*"], &["gw"], "plain");
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    let d = dir.path();

    let o = explain(d, &["https://a.example.com/x"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    o.has("request: GET https://a.example.com/x");
    o.has("listener: Gateway port 443");
    o.has("filter chain: https.443.https-a.gw.default (by SNI)");
    o.has("virtual host: a.example.com (exact host)");
    o.has("result: direct response 200 (1 byte body)");

    let o = explain(d, &["https://x.wild.example:443/"]);
    o.has("filter chain: https.443.https-w.gw.default (by SNI)");
    o.has("virtual host: *.wild.example (wildcard suffix)");

    let o = explain(d, &["https://nope.example/"]);
    o.has(r#"result: no response: no server on Gateway port 443 has a host matching SNI "nope.example": the handshake is refused"#);
    assert!(!o.stdout.contains("filter chain:"), "{}", o.stdout);

    let o = explain(d, &["http://a.example.com:443/"]);
    o.has("result: no response: Gateway port 443 serves TLS: a plain-text request fails the handshake (use an https:// URL)");

    let o = explain(d, &["https://a.example.com:80/"]);
    o.has("result: no response: Gateway port 80 serves plain text: a TLS handshake gets no answer");

    // JSON names the chain too.
    let o = explain(d, &["https://a.example.com/x", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["filter_chain"], "https.443.https-a.gw.default");
    assert_eq!(v["request"]["https"], true);
}
