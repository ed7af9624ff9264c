//! The `tcp`-class Istio samples (copied unmodified into `tests/fixtures/l4/`) validate with no
//! "not supported" warning for what meshgate now serves, and L4 match conditions compile as
//! istiod applies them at a gateway.

use meshgate::compile::{compile, Compiled, Options};
use meshgate::config::{load_str, Report, Resources};
use meshgate::route::L4Table;

fn fixture(name: &str) -> Resources {
    let path = format!("{}/tests/fixtures/l4/{name}", env!("CARGO_MANIFEST_DIR"));
    let yaml = std::fs::read_to_string(path).unwrap();
    let (resources, load) = load_str(&yaml, name, "default");
    assert!(load.errors.is_empty(), "{name}: {:#?}", load.errors);
    resources
}

fn compiled(resources: &Resources) -> (Compiled, Vec<String>) {
    let (compiled, report): (_, Report) = compile(resources, &Options::default());
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    let unsupported = report
        .warnings
        .iter()
        .map(|w| w.to_string())
        .filter(|w| w.contains("not supported") && !w.contains("spec.selector"))
        .collect();
    (compiled.unwrap(), unsupported)
}

/// `(port, "passthrough" | "tcp", destination cluster keys)` of every L4 listener.
fn l4_ports(c: &Compiled) -> Vec<(u16, &'static str, Vec<String>)> {
    c.listeners
        .iter()
        .filter_map(|l| {
            let keys = |r: &meshgate::route::L4Route| -> Vec<String> {
                r.clusters.iter().map(|c| c.key.to_string()).collect()
            };
            Some(match l.l4.as_ref()? {
                L4Table::Tcp(r) => (l.port, "tcp", r.as_deref().map(keys).unwrap_or_default()),
                L4Table::Passthrough(t) => (
                    l.port,
                    "passthrough",
                    t.any.as_deref().map(keys).unwrap_or_default(),
                ),
            })
        })
        .collect()
}

#[test]
fn tcp_echo_samples_validate_and_route() {
    let all_v1 = fixture("tcp-echo-all-v1.yaml");
    let (c, unsupported) = compiled(&all_v1);
    assert!(unsupported.is_empty(), "{unsupported:#?}");
    let v1 = "outbound|9000|v1|tcp-echo.default.svc.cluster.local".to_owned();
    assert_eq!(l4_ports(&c), [(31400, "tcp", vec![v1.clone()])]);

    // tcp-echo-20-v2.yaml replaces the VirtualService of tcp-echo-all-v1.yaml (kubectl apply):
    // validated with that file's Gateway and DestinationRule.
    let mut resources = fixture("tcp-echo-20-v2.yaml");
    resources.gateways = all_v1.gateways;
    resources.destination_rules = all_v1.destination_rules;
    let (c, unsupported) = compiled(&resources);
    assert!(unsupported.is_empty(), "{unsupported:#?}");
    let v2 = "outbound|9000|v2|tcp-echo.default.svc.cluster.local".to_owned();
    assert_eq!(l4_ports(&c), [(31400, "tcp", vec![v1, v2])]);
}

#[test]
fn passthrough_sample_validates_and_routes_by_port() {
    let (c, unsupported) = compiled(&fixture("expose-istiod.yaml"));
    assert!(unsupported.is_empty(), "{unsupported:#?}");
    assert_eq!(
        l4_ports(&c),
        [
            (
                15012,
                "passthrough",
                vec!["outbound|15012||istiod.istio-system.svc.cluster.local".to_owned()]
            ),
            (
                15017,
                "passthrough",
                vec!["outbound|443||istiod.istio-system.svc.cluster.local".to_owned()]
            ),
        ]
    );
}

#[test]
fn auto_passthrough_and_egress_samples_validate() {
    // AUTO_PASSTHROUGH needs mesh mTLS (the SNI names a mesh cluster): still warned and skipped.
    let (_, unsupported) = compiled(&fixture("expose-services.yaml"));
    assert_eq!(unsupported.len(), 1, "{unsupported:#?}");
    assert!(
        unsupported[0].contains("AUTO_PASSTHROUGH"),
        "{unsupported:#?}"
    );
    let (_, unsupported) = compiled(&fixture("github.yaml"));
    assert!(unsupported.is_empty(), "{unsupported:#?}");
}

#[test]
fn l4_matches_check_source_labels_and_namespace_against_the_gateway() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers: [{port: {number: 9000, name: tcp, protocol: TCP}, hosts: [\"*\"]}]\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw2}\nspec:\n  servers: [{port: {number: 9001, name: tcp, protocol: TCP}, hosts: [\"*\"]}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw, gw2]\n  tcp:\n  - {match: [{sourceLabels: {app: other}}], route: [{destination: {host: a.svc, port: {number: 1}}}]}\n  - {match: [{sourceNamespace: elsewhere}], route: [{destination: {host: b.svc, port: {number: 1}}}]}\n  - {match: [{gateways: [gw2]}], route: [{destination: {host: c.svc, port: {number: 1}}}]}\n  - {match: [{sourceLabels: {istio: ingressgateway}, sourceNamespace: istio-system}], route: [{destination: {host: d.svc, port: {number: 1}}}]}\n---\n";
    let (resources, load) = load_str(yaml, "l4.yaml", "default");
    assert!(load.errors.is_empty(), "{:#?}", load.errors);
    let (c, _) = compiled(&resources);
    assert_eq!(
        l4_ports(&c),
        [
            (9000, "tcp", vec!["outbound|1||d.svc".to_owned()]),
            (9001, "tcp", vec!["outbound|1||c.svc".to_owned()]),
        ]
    );
}

#[test]
fn l4_route_errors_name_the_field() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers: [{port: {number: 443, name: tls, protocol: TLS}, hosts: [\"*\"], tls: {mode: PASSTHROUGH}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [a.example.com]\n  gateways: [gw]\n  tls:\n  - {match: [{sniHosts: [b.example.com]}], route: [{destination: {host: a.svc}}]}\n  - {match: [{port: 443}], route: [{destination: {host: a.svc}}]}\n  - {route: [{destination: {host: a.svc}}]}\n  tcp:\n  - {match: [{port: 70000}]}\n---\n";
    let (resources, _) = load_str(yaml, "bad.yaml", "default");
    let (compiled, report) = compile(&resources, &Options::default());
    assert!(compiled.is_none());
    let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
    for field in [
        "spec.tls[0].match[0].sniHosts[0]",
        "spec.tls[1].match[0].sniHosts",
        "spec.tls[2].match",
        "spec.tcp[0].match[0].port",
        "spec.tcp[0].route",
    ] {
        assert!(
            errors.iter().any(|e| e.contains("bad.yaml")
                && e.contains("VirtualService")
                && e.contains(field)),
            "{field} in {errors:#?}"
        );
    }
}
