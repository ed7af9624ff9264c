//! Gateways → listeners: servers of every Gateway grouped by port, in Gateway (name, namespace)
//! order. A port with plain HTTP servers is a plaintext listener with one merged route table; a
//! port with terminating HTTPS and TLS servers is a TLS listener with one filter chain per server
//! (HTTP routes for HTTPS, a `tcp` route for TLS), and the passthrough servers on it have SNI
//! routes beside them; a TCP port has its TCP route.
//! May not touch: how a route table is made (`tables`) or a chain (`chains`).

use std::collections::BTreeMap;

use crate::config::{ErrorKind, Report, Resources};
use crate::route::RouteTable;

use super::chains::Terminating;
use super::l4_routes;
use super::tables::Tables;
use super::templates::L4Kind;
use super::templates::VsTemplate;
use super::tls;
use super::{chains, Checked, Compiled, Listener, Options, Summary};

/// What a server is to a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// HTTP, HTTP2, GRPC, GRPC-WEB: plaintext, merged by port.
    Plain,
    /// HTTPS terminated here (SIMPLE, MUTUAL, OPTIONAL_MUTUAL): a filter chain.
    Https,
    /// TLS terminated here (same modes): a filter chain whose decrypted stream takes a `tcp`
    /// route. Shares a port with HTTPS servers (both are SNI-chosen chains).
    TlsTcp,
    /// HTTPS or TLS with `tls.mode: PASSTHROUGH`: routed by SNI, not terminated.
    Passthrough,
    /// TCP (and MONGO, REDIS, MYSQL, treated as TCP): opaque TCP proxying.
    Tcp,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Plain => "plain HTTP",
            Kind::Https => "HTTPS",
            Kind::TlsTcp => "TLS-terminated TCP",
            Kind::Passthrough => "TLS passthrough",
            Kind::Tcp => "TCP",
        }
    }

    /// Whether servers of kinds `self` and `other` can share a (non-plain) port: the same kind,
    /// or both TLS (terminated or passed through: one filter chain each, chosen by SNI).
    fn shares_port_with(self, other: Kind) -> bool {
        let tls = |k| matches!(k, Kind::Https | Kind::TlsTcp | Kind::Passthrough);
        self == other || (tls(self) && tls(other))
    }
}

/// Builds the listeners from what passed `check` (whose regexes the result carries on). Errors
/// have already been ruled out; this only adds warnings.
pub(super) fn build(
    resources: &Resources,
    checked: Checked,
    opts: &Options,
    report: &mut Report,
) -> Compiled {
    let templates: &[VsTemplate] = &checked.templates;
    let mut gw_order: Vec<usize> = (0..resources.gateways.len()).collect();
    gw_order.sort_by(|&a, &b| {
        let (a, b) = (&resources.gateways[a], &resources.gateways[b]);
        (&a.name, &a.namespace).cmp(&(&b.name, &b.namespace))
    });

    // Servers grouped by port, in Gateway order.
    let mut ports: BTreeMap<u16, Vec<(usize, usize, Kind)>> = BTreeMap::new();
    for &g in &gw_order {
        let gw = &resources.gateways[g];
        for (s, server) in gw.spec.servers.iter().enumerate() {
            let Some(port) = &server.port else { continue };
            let number = port.number.unwrap_or(0) as u16;
            let proto = port.protocol.as_deref().unwrap_or("").to_ascii_uppercase();
            let f = format!("spec.servers[{s}].port.protocol");
            let kind = match proto.as_str() {
                "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" => Kind::Plain,
                "HTTPS" | "TLS"
                    if server
                        .tls
                        .as_ref()
                        .is_some_and(|t| tls::terminates(t, opts.mesh_certs_dir.as_deref())) =>
                {
                    if proto == "TLS" {
                        Kind::TlsTcp
                    } else {
                        Kind::Https
                    }
                }
                "HTTPS" | "TLS"
                    if server
                        .tls
                        .as_ref()
                        .is_some_and(|t| tls::mode(t) == "PASSTHROUGH") =>
                {
                    Kind::Passthrough
                }
                "TCP" | "MONGO" | "REDIS" | "MYSQL" => Kind::Tcp,
                "HTTPS" | "TLS" => {
                    let mode = server.tls.as_ref().map(tls::mode).unwrap_or_default();
                    let what = match (proto.as_str(), mode.as_str()) {
                        ("HTTPS", "ISTIO_MUTUAL") => format!("HTTPS servers with tls.mode ISTIO_MUTUAL without --mesh-certs-dir, the gateway's mesh identity (port {number})"),
                        ("HTTPS", _) => format!("HTTPS servers with tls.mode {mode} (port {number}; terminating modes SIMPLE, MUTUAL, OPTIONAL_MUTUAL and, with --mesh-certs-dir, ISTIO_MUTUAL are served)"),
                        ("TLS", "ISTIO_MUTUAL") => format!("TLS servers with tls.mode ISTIO_MUTUAL without --mesh-certs-dir, the gateway's mesh identity (port {number})"),
                        _ => format!("TLS servers with tls.mode {mode} (port {number}; PASSTHROUGH, SIMPLE, MUTUAL, OPTIONAL_MUTUAL and, with --mesh-certs-dir, ISTIO_MUTUAL are served)"),
                    };
                    report.warn(
                        &gw.source,
                        f,
                        ErrorKind::NotYetSupported {
                            what,
                            ignored: true,
                        },
                    );
                    continue;
                }
                other => {
                    report.warn(
                        &gw.source,
                        f,
                        ErrorKind::NotYetSupported {
                            what: format!("{other} servers (port {number})"),
                            ignored: true,
                        },
                    );
                    continue;
                }
            };
            if server.bind.is_some() {
                report.warn(
                    &gw.source,
                    format!("spec.servers[{s}].bind"),
                    ErrorKind::NotYetSupported {
                        what: "per-server bind addresses (use --bind / --listen)".into(),
                        ignored: true,
                    },
                );
            }
            ports.entry(number).or_default().push((g, s, kind));
        }
    }

    let mut tables = Tables::new(resources, templates, opts);
    let mut listeners = Vec::new();
    for (port, servers) in ports {
        let plain: Vec<(usize, usize)> = servers
            .iter()
            .filter(|(_, _, k)| *k == Kind::Plain)
            .map(|&(g, s, _)| (g, s))
            .collect();
        if plain.is_empty() {
            // No plain HTTP server: the first server's kind decides the port; servers of a kind
            // that cannot share it are skipped with a warning (TLS servers, terminated and
            // passed through, share a port; istiod skips a later TCP server on a TCP port too).
            let kind = servers[0].2;
            let mut mine = Vec::new();
            for &(g, s, k) in &servers {
                if k.shares_port_with(kind) && (kind != Kind::Tcp || mine.is_empty()) {
                    mine.push((g, s, k));
                    continue;
                }
                let gw = &resources.gateways[g];
                let what = if k == kind {
                    format!("a second TCP server on port {port}: skipped (as istiod skips it)")
                } else {
                    format!(
                        "{} server on port {port}, which a {} server already uses: skipped (one kind of server per port)",
                        k.describe(),
                        kind.describe()
                    )
                };
                report.warn(
                    &gw.source,
                    format!("spec.servers[{s}]"),
                    ErrorKind::Note(what),
                );
            }
            // TLS servers, terminated and passed through, share the port: the terminated ones
            // are filter chains, the passthrough ones SNI routes, and the best server name for
            // a ClientHello's SNI decides which (as Envoy matches one listener's chains).
            let pairs = |keep: fn(Kind) -> bool| -> Vec<(usize, usize)> {
                mine.iter()
                    .filter(|(_, _, k)| keep(*k))
                    .map(|&(g, s, _)| (g, s))
                    .collect()
            };
            let l4 = match kind {
                Kind::Tcp => Some(l4_routes::build_port(
                    &mut tables,
                    &pairs(|_| true),
                    L4Kind::Tcp,
                    port,
                    report,
                )),
                _ => {
                    let passthrough = pairs(|k| k == Kind::Passthrough);
                    (!passthrough.is_empty()).then(|| {
                        l4_routes::build_port(&mut tables, &passthrough, L4Kind::Tls, port, report)
                    })
                }
            };
            let terminating: Vec<Terminating> = mine
                .iter()
                .filter(|(_, _, k)| matches!(k, Kind::Https | Kind::TlsTcp))
                .map(|&(g, s, k)| Terminating {
                    gateway: g,
                    server: s,
                    tcp: k == Kind::TlsTcp,
                })
                .collect();
            let chains = chains::build(&terminating, port, &mut tables, report);
            let listener = Listener {
                port,
                table: RouteTable::default(),
                chains,
                l4,
            };
            listeners.push(listener);
            continue;
        }
        // istiod skips a TLS server on a port a plain HTTP server already has ("conflict");
        // meshgate keeps such a port plain text whatever the order.
        for &(g, s, k) in servers.iter().filter(|(_, _, k)| *k != Kind::Plain) {
            let gw = &resources.gateways[g];
            report.warn(
                &gw.source,
                format!("spec.servers[{s}]"),
                ErrorKind::Note(format!(
                    "{} server on port {port}, which plain HTTP servers also use: skipped, the port stays plain text (as istiod skips a TLS or TCP server on an HTTP port)",
                    k.describe()
                )),
            );
        }
        let table = tables.route_table(&plain, port, report);
        listeners.push(Listener {
            port,
            table,
            chains: Vec::new(),
            l4: None,
        });
    }
    let summary = Summary {
        gateways: resources.gateways.len(),
        virtual_services: resources.virtual_services.len(),
        destination_rules: resources.destination_rules.len(),
        service_entries: resources.service_entries.len(),
        listeners: listeners.len(),
        clusters: tables.clusters.specs.len(),
        ..tables.summary.clone()
    };
    Compiled {
        listeners,
        clusters: tables.clusters.specs,
        summary,
        regexes: checked.regexes,
    }
}
