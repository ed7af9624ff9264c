//! The terminating HTTPS and TLS servers of one port → one filter chain per server, as istiod
//! builds them: the server's hosts are its SNI names (`*` matches any name and no name), an HTTPS
//! server has its own route table made from its own hosts only, a `protocol: TLS` server the `tcp`
//! route its bound VirtualServices give it (`l4_routes`), and a server whose host another server
//! of the port already claims is skipped whole ("duplicate host names").
//! May not touch: certificates and files (`crate::tls` loads them when the snapshot is built).

use std::sync::Arc;

use crate::config::{ErrorKind, Report};
use crate::route::RouteTable;

use super::l4_routes;
use super::names::split_server_host;
use super::tables::Tables;
use super::templates::L4Kind;
use super::tls::server_tls;
use super::FilterChain;

/// One terminating server of a port: `(gateway, server)` indexes and whether it is a
/// `protocol: TLS` server (its decrypted stream is tunnelled by a `tcp` route).
#[derive(Debug, Clone, Copy)]
pub(super) struct Terminating {
    pub gateway: usize,
    pub server: usize,
    pub tcp: bool,
}

/// The filter chains of `port`, from its terminating HTTPS and TLS servers (in Gateway order).
pub(super) fn build(
    servers: &[Terminating],
    port: u16,
    tables: &mut Tables<'_>,
    report: &mut Report,
) -> Vec<FilterChain> {
    let resources = tables.resources;
    let mut chains: Vec<FilterChain> = Vec::new();
    for &Terminating {
        gateway: g,
        server: s,
        tcp,
    } in servers
    {
        let gw = &resources.gateways[g];
        let server = &gw.spec.servers[s];
        let mesh = tables.opts.mesh_certs_dir.as_deref();
        let Some(tls) = server.tls.as_ref().and_then(|t| server_tls(t, mesh)) else {
            continue;
        };
        let mut names: Vec<String> = Vec::new();
        for h in &server.hosts {
            let (_, h) = split_server_host(h, &gw.namespace);
            let h = h.to_ascii_lowercase();
            if !names.contains(&h) {
                names.push(h);
            }
        }
        let taken: Vec<&str> = names
            .iter()
            .filter(|n| chains.iter().any(|c| c.server_names.contains(n)))
            .map(String::as_str)
            .collect();
        if !taken.is_empty() {
            report.warn(
                &gw.source,
                format!("spec.servers[{s}].hosts"),
                ErrorKind::Note(format!(
                    "duplicate host names {} on TLS port {port}: another server of the port serves them; this server is skipped (as istiod does)",
                    taken.join(", ")
                )),
            );
            continue;
        }
        let port_name = server
            .port
            .as_ref()
            .and_then(|p| p.name.as_deref())
            .unwrap_or("");
        let (prefix, table, tcp) = if tcp {
            // As istiod: the first bound VirtualService with a matching `tcp` route, for this
            // server alone (no route: the chain closes its connections after the handshake).
            let l4 = l4_routes::build_port(tables, &[(g, s)], L4Kind::Tcp, port, report);
            ("tcp", RouteTable::default(), Some(l4))
        } else {
            ("https", tables.route_table(&[(g, s)], port, report), None)
        };
        chains.push(FilterChain {
            name: format!("{prefix}.{port}.{port_name}.{}.{}", gw.name, gw.namespace).into(),
            server_names: names,
            tls: Arc::new(tls),
            table,
            tcp,
            source: gw.source.clone(),
            field: format!("spec.servers[{s}].tls"),
        });
    }
    chains
}
