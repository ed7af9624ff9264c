//! Route lookup and config compile benchmarks.
//!
//! Istio YAML is generated in memory: one Gateway `default/gw` (port 8080, hosts `["*"]`) and
//! one VirtualService per virtual host, each with host `svc-<i>.example.com` (or
//! `*.wild-<i>.example.org` for a few wildcard hosts) and ten http routes (exact, prefix and
//! regex uri matches, one with a header match) to destination `svc-<i>`.
//!
//! Run quickly with:
//! `cargo bench --bench route_lookup -- --warm-up-time 1 --measurement-time 3`

use std::fmt::Write as _;

use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode,
};
use http::{HeaderMap, HeaderValue, Method};
use meshgate::compile::{self, Compiled, Options};
use meshgate::config::load_str;
use meshgate::route::{Decision, RequestView, RouteTable};

/// Listener port of the generated Gateway.
const PORT: u16 = 8080;
/// Wildcard virtual hosts added next to the exact ones in the lookup benchmarks.
const WILDCARD_HOSTS: usize = 5;
/// Routes per VirtualService (the length of `route_entries`).
const ROUTES_PER_HOST: usize = 10;

/// The `http[]` entries of a generated VirtualService: (name, YAML `match` list).
/// None is a catch-all, so their order is kept and `last` really is the last route.
/// Regex patterns contain `tag` (the VirtualService's name), so they differ between
/// VirtualServices as in real configs and a pattern cache in the compiler could not hide
/// their compile cost.
fn route_entries(tag: &str) -> [(&'static str, String); ROUTES_PER_HOST] {
    [
        ("users-exact", "[{uri: {exact: /v1/users}}]".to_owned()),
        ("orders-prefix", "[{uri: {prefix: /v1/orders/}}]".to_owned()),
        (
            "items-regex",
            format!(r#"[{{uri: {{regex: "/{tag}/v1/items/[0-9]+"}}}}]"#),
        ),
        (
            "carts-canary",
            r#"[{uri: {prefix: /v1/carts/}, headers: {x-canary: {exact: "true"}}}]"#.to_owned(),
        ),
        ("users-v2-exact", "[{uri: {exact: /v2/users}}]".to_owned()),
        (
            "orders-v2-prefix",
            "[{uri: {prefix: /v2/orders/}}]".to_owned(),
        ),
        (
            "items-v2-regex",
            format!(r#"[{{uri: {{regex: "/{tag}/v2/items/[0-9]+"}}}}]"#),
        ),
        ("v3-prefix", "[{uri: {prefix: /v3/}}]".to_owned()),
        (
            "details-regex",
            format!(r#"[{{uri: {{regex: "/{tag}/v4/[a-z]+/details"}}}}]"#),
        ),
        ("last", "[{uri: {prefix: /last/}}]".to_owned()),
    ]
}

fn push_virtual_service(out: &mut String, name: &str, host: &str, dest: &str) {
    write!(
        out,
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: {name}, namespace: default}}\n\
         spec:\n  hosts: [\"{host}\"]\n  gateways: [gw]\n  http:\n"
    )
    .unwrap();
    for (route, matches) in route_entries(name) {
        write!(
            out,
            "  - name: {route}\n    match: {matches}\n    route: [{{destination: {{host: {dest}}}}}]\n"
        )
        .unwrap();
    }
}

/// A Gateway plus `exact` VirtualServices with host `svc-<i>.example.com` and `wildcard` ones
/// with host `*.wild-<i>.example.org`.
fn generate_yaml(exact: usize, wildcard: usize) -> String {
    let mut out = String::with_capacity((exact + wildcard) * 1200 + 256);
    out.push_str(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\n\
         metadata: {name: gw, namespace: default}\n\
         spec:\n  servers:\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n",
    );
    for i in 0..exact {
        push_virtual_service(
            &mut out,
            &format!("vs-{i}"),
            &format!("svc-{i}.example.com"),
            &format!("svc-{i}"),
        );
    }
    for i in 0..wildcard {
        push_virtual_service(
            &mut out,
            &format!("wild-{i}"),
            &format!("*.wild-{i}.example.org"),
            &format!("wild-{i}"),
        );
    }
    out
}

/// `load_str` + `compile`; panics on any config error so a broken generator is noticed.
fn load_and_compile(text: &str) -> Compiled {
    let (resources, report) = load_str(text, "bench.yaml", "default");
    assert!(report.errors.is_empty(), "load errors: {:?}", report.errors);
    let (compiled, report) = compile::compile(&resources, &Options::default());
    assert!(
        report.errors.is_empty(),
        "compile errors: {:?}",
        report.errors
    );
    compiled.expect("compile returned no config without reporting an error")
}

fn take_table(compiled: Compiled) -> RouteTable {
    compiled
        .listeners
        .into_iter()
        .find(|l| l.port == PORT)
        .expect("no listener on port 8080")
        .table
}

fn view<'a>(authority: &'a str, path: &'a str, headers: &'a HeaderMap) -> RequestView<'a> {
    RequestView {
        method: &Method::GET,
        scheme: "http",
        authority,
        path,
        query: None,
        headers,
    }
}

/// Checks outside the timed loop that a request decides what the benchmark claims it does.
fn expect_route(table: &RouteTable, req: &RequestView<'_>, route_name: &str) {
    match table.find(req) {
        Decision::Route(r) => assert_eq!(&*r.name, route_name, "request {req:?}"),
        other => panic!("request {req:?}: expected route {route_name}, got {other:?}"),
    }
}

fn expect_no_route(table: &RouteTable, req: &RequestView<'_>) {
    match table.find(req) {
        Decision::NoRoute => {}
        other => panic!("request {req:?}: expected NoRoute, got {other:?}"),
    }
}

fn bench_lookup(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert("user-agent", HeaderValue::from_static("bench/1.0"));
    headers.insert("accept", HeaderValue::from_static("*/*"));
    headers.insert("x-canary", HeaderValue::from_static("false"));

    let mut group = c.benchmark_group("find");
    for n in [10usize, 1_000, 10_000] {
        let text = generate_yaml(n, WILDCARD_HOSTS);
        let compiled = load_and_compile(&text);
        assert_eq!(compiled.summary.virtual_hosts, n + WILDCARD_HOSTS);
        assert_eq!(
            compiled.summary.routes,
            (n + WILDCARD_HOSTS) * ROUTES_PER_HOST
        );
        let table = take_table(compiled);

        // Host headers as a client sends them to port 8080; the last vhost of each kind.
        let exact_host = format!("svc-{}.example.com:8080", n - 1);
        let wild_host = format!("api.eu.wild-{}.example.org:8080", WILDCARD_HOSTS - 1);
        let unknown_host = "nope.example.net:8080";

        let exact_hit = view(&exact_host, "/last/page", &headers);
        let wild_hit = view(&wild_host, "/last/page", &headers);
        let miss_host = view(unknown_host, "/last/page", &headers);
        let miss_path = view(&exact_host, "/nothing/here", &headers);

        expect_route(&table, &exact_hit, &format!("default/vs-{}/last", n - 1));
        expect_route(
            &table,
            &wild_hit,
            &format!("default/wild-{}/last", WILDCARD_HOSTS - 1),
        );
        expect_no_route(&table, &miss_host);
        expect_no_route(&table, &miss_path);

        let cases = [
            ("exact_host_last_route", &exact_hit),
            ("wildcard_host_last_route", &wild_hit),
            ("miss_unknown_host", &miss_host),
            ("miss_no_matching_route", &miss_path),
        ];
        for (name, req) in cases {
            group.bench_with_input(BenchmarkId::new(name, n), req, |b, req| {
                b.iter(|| black_box(&table).find(black_box(req)))
            });
        }
    }
    group.finish();
}

fn bench_compile(c: &mut Criterion) {
    const HOSTS: usize = 1_000;
    let text = generate_yaml(HOSTS, 0);
    let check = load_and_compile(&text);
    assert_eq!(check.summary.virtual_hosts, HOSTS);
    assert_eq!(check.summary.routes, HOSTS * ROUTES_PER_HOST);
    drop(check);
    let (resources, _) = load_str(&text, "bench.yaml", "default");
    let opts = Options::default();

    let mut group = c.benchmark_group("compile");
    // One iteration takes tens to hundreds of milliseconds: ten flat samples keep it short.
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    let id = format!("{HOSTS}_hosts_x_{ROUTES_PER_HOST}_routes");
    // The whole reload path minus file I/O; the result is dropped outside the timing.
    group.bench_function(BenchmarkId::new("load_str+compile", &id), |b| {
        b.iter_batched(
            || (),
            |()| load_and_compile(black_box(&text)),
            BatchSize::PerIteration,
        )
    });
    group.bench_function(BenchmarkId::new("load_str", &id), |b| {
        b.iter_batched(
            || (),
            |()| load_str(black_box(&text), "bench.yaml", "default"),
            BatchSize::PerIteration,
        )
    });
    group.bench_function(BenchmarkId::new("compile_only", &id), |b| {
        b.iter_batched(
            || (),
            |()| compile::compile(black_box(&resources), &opts),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_lookup, bench_compile);
criterion_main!(benches);
