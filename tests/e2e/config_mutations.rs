//! Bad input never panics: thousands of mutated versions of valid configs go through the loader
//! and the compiler; each must come back as a config or as errors, never as a panic.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEEDS: &[&str] = &[
    include_str!("../../config/shop.yaml"),
    include_str!("../../config/gateway.yaml"),
    include_str!("../../config/backend-service.yaml"),
    include_str!("../fixtures/validate/valid/bookinfo/bookinfo-gateway.yaml"),
    include_str!("../fixtures/validate/valid/bookinfo/destination-rule-all.yaml"),
    include_str!("../fixtures/validate/valid/kubernetes-and-service-entry.yaml"),
    RESILIENCE,
];

/// Exercises the policy compilers too.
const RESILIENCE: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r.example.com]\n  gateways: [gw]\n  http:\n  - match: [{uri: {regex: \"/a/[0-9]+\"}, headers: {x: {prefix: y}}, queryParams: {q: {exact: \"1\"}}}]\n    timeout: 2s\n    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: \"5xx,reset,503\"}\n    fault: {delay: {fixedDelay: 1s, percentage: {value: 10}}, abort: {httpStatus: 503, percentage: {value: 1}}}\n    mirror: {host: m.example.com}\n    mirrorPercentage: {value: 50}\n    rewrite: {uriRegexRewrite: {match: \"^/a/(.*)$\", rewrite: \"/b/\\\\1\"}}\n    headers: {request: {set: {x-a: \"%REQ(x-b)%\"}}}\n    route: [{destination: {host: r.example.com, subset: v1, port: {number: 80}}, weight: 90}, {destination: {host: r.example.com, subset: v2}, weight: 10}]\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r.example.com\n  trafficPolicy:\n    loadBalancer: {consistentHash: {httpCookie: {name: c, ttl: 10s}, maglev: {tableSize: 65537}}}\n    connectionPool: {tcp: {maxConnections: 10, connectTimeout: 1s}, http: {http1MaxPendingRequests: 5, maxRetries: 2}}\n    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50}\n    portLevelSettings: [{port: {number: 80}, loadBalancer: {simple: ROUND_ROBIN}}]\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: RANDOM}}}]\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: r}\nspec:\n  hosts: [r.example.com, m.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1, labels: {version: v1}, weight: 3}, {address: 10.0.0.2, labels: {version: v2}}]\n";

const VALUES: &[&str] = &[
    "-1",
    "0",
    "65536",
    "99999999999999999999",
    "\"\"",
    "[]",
    "{}",
    "null",
    "'*'",
    "\"%\"",
    "\"%BAD%\"",
    "\"(\"",
    "0.5ms",
    "1e400",
    "true",
    "\"\\u0000\"",
    "\"*.*\"",
    "\"a/b/c\"",
    "{exact: \"\"}",
    "{regex: \"*\"}",
    "[1, 2]",
    "\"..\"",
    "-",
    "&a x",
    "*a",
    "!!binary AAAA",
];

fn mutate(text: &str, rng: &mut StdRng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for _ in 0..rng.gen_range(1..4) {
        if lines.is_empty() {
            break;
        }
        let i = rng.gen_range(0..lines.len());
        match rng.gen_range(0..6) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            2 | 3 => {
                // Replace the value after the first `: ` (or the whole line).
                let v = VALUES[rng.gen_range(0..VALUES.len())];
                let l = &lines[i];
                lines[i] = match l.find(": ") {
                    Some(p) => format!("{}: {v}", &l[..p]),
                    None => format!("{l} {v}"),
                };
            }
            4 => lines[i] = format!("  {}", lines[i]),
            _ => {
                let cut = rng.gen_range(0..=lines[i].len());
                let cut = (0..=cut)
                    .rev()
                    .find(|c| lines[i].is_char_boundary(*c))
                    .unwrap_or(0);
                lines[i].truncate(cut);
            }
        }
    }
    lines.join("\n")
}

#[test]
fn mutated_configs_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x6d65_7368_6761_7465);
    let opts = meshgate::compile::Options::default();
    let (mut compiled, mut rejected) = (0, 0);
    for round in 0..3000 {
        let seed = SEEDS[round % SEEDS.len()];
        let text = mutate(seed, &mut rng);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let (resources, mut report) = meshgate::config::load_str(&text, "fuzz.yaml", "default");
            let (result, r2) = meshgate::compile::compile(&resources, &opts);
            report.extend(r2);
            // Every error renders as one line naming the file.
            for e in &report.errors {
                let line = e.to_string();
                assert!(line.starts_with("fuzz.yaml#"), "{line}");
                assert!(!line.contains('\n') || line.contains("YAML"), "{line}");
            }
            result.is_some() && report.errors.is_empty()
        }));
        match outcome {
            Ok(true) => compiled += 1,
            Ok(false) => rejected += 1,
            Err(_) => panic!("panicked on mutation {round}:\n{text}"),
        }
    }
    eprintln!("config_mutations: {compiled} compiled, {rejected} rejected, 0 panics");
    assert!(
        compiled > 100 && rejected > 100,
        "mutations too weak or too strong: {compiled}/{rejected}"
    );
}
