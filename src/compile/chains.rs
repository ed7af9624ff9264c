//! The HTTPS servers of one port → one filter chain per server, as istiod builds them: the
//! server's hosts are its SNI names (`*` matches any name and no name), it has its own route
//! table made from its own hosts only, and a server whose host another server of the port already
//! claims is skipped whole ("duplicate host names").
//! May not touch: certificates and files (`crate::tls` loads them when the snapshot is built).

use std::sync::Arc;

use crate::config::{ErrorKind, Report};

use super::names::split_server_host;
use super::tables::Tables;
use super::tls::server_tls;
use super::FilterChain;

/// The filter chains of `port`, from its terminating HTTPS servers (in Gateway order).
pub(super) fn build(
    servers: &[(usize, usize)],
    port: u16,
    tables: &mut Tables<'_>,
    report: &mut Report,
) -> Vec<FilterChain> {
    let resources = tables.resources;
    let mut chains: Vec<FilterChain> = Vec::new();
    for &(g, s) in servers {
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
                    "duplicate host names {} on HTTPS port {port}: another server of the port serves them; this server is skipped (as istiod does)",
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
        let table = tables.route_table(&[(g, s)], port, report);
        chains.push(FilterChain {
            name: format!("https.{port}.{port_name}.{}.{}", gw.name, gw.namespace).into(),
            server_names: names,
            tls: Arc::new(tls),
            table,
            source: gw.source.clone(),
            field: format!("spec.servers[{s}].tls"),
        });
    }
    chains
}
