//! VirtualService `tls:` and `tcp:` routes: validated into port-independent templates, then, per
//! TLS-passthrough or TCP port, bound to that port's Gateway servers and resolved to clusters
//! (`route::L4Table`). Istio's rules (istio-semantics §2.4, §2.5): on a passthrough port every
//! `tls` match of every bound VirtualService becomes an SNI filter chain (a name an earlier match
//! has is skipped); on a TCP port the first bound VirtualService with a matching `tcp` route wins.
//! May not touch: HTTP routes (`routes`, `tables`), sockets.

use std::sync::Arc;

use crate::config::{self, ErrorKind, Report, Resource};
use crate::route::{HeaderOps, L4Cluster, L4Route, L4Table, SniTable, TCP_IDLE_TIMEOUT};

use super::destination::destination;
use super::headers::invalid;
use super::matchers::port_number;
use super::names::{exported_to, host_within, intersect, resolve_gateway_ref, split_server_host};
use super::tables::Tables;
use super::templates::{DestinationTemplate, L4Kind, L4MatchTemplate, L4RuleTemplate};
use super::{Ctx, Options};

/// Validates and compiles the `tls:` or `tcp:` rules of a VirtualService. `hosts` are its
/// resolved hosts (an SNI host must lie inside one of them).
pub(super) fn compile_l4(
    vs: &Resource<config::VirtualServiceSpec>,
    kind: L4Kind,
    hosts: &[String],
    cx: &mut Ctx<'_>,
) -> Vec<L4RuleTemplate> {
    let (list, section): (
        Vec<(&[config::L4MatchAttributes], &[config::RouteDestination])>,
        _,
    ) = match kind {
        L4Kind::Tls => (
            vs.spec
                .tls
                .iter()
                .map(|r| (&r.matches[..], &r.route[..]))
                .collect(),
            "tls",
        ),
        L4Kind::Tcp => (
            vs.spec
                .tcp
                .iter()
                .map(|r| (&r.matches[..], &r.route[..]))
                .collect(),
            "tcp",
        ),
    };
    let mut out = Vec::new();
    for (ri, (matches, route)) in list.into_iter().enumerate() {
        let f = format!("spec.{section}[{ri}]");
        let errors_before = cx.error_count();
        if kind == L4Kind::Tls && matches.is_empty() {
            cx.error(
                &format!("{f}.match"),
                ErrorKind::Note("a tls route needs at least one match with sniHosts".into()),
            );
        }
        let mut compiled = Vec::new();
        for (mi, m) in matches.iter().enumerate() {
            if let Some(t) = compile_match(vs, kind, m, &format!("{f}.match[{mi}]"), hosts, cx) {
                compiled.push(t);
            }
        }
        if route.is_empty() {
            cx.error(&format!("{f}.route"), ErrorKind::Missing);
        }
        let mut destinations = Vec::new();
        for (di, d) in route.iter().enumerate() {
            let df = format!("{f}.route[{di}]");
            let weight = match d.weight {
                Some(w) if w < 0 => {
                    cx.error(
                        &format!("{df}.weight"),
                        invalid("weight", &w.to_string(), "must be >= 0"),
                    );
                    0
                }
                Some(w) => w.min(i32::MAX as i64) as u32,
                None => 0,
            };
            let Some(dest) = &d.destination else {
                cx.error(&format!("{df}.destination"), ErrorKind::Missing);
                continue;
            };
            let field = format!("{df}.destination");
            if let Some((host, subset, port)) = destination(dest, &field, &vs.namespace, cx) {
                destinations.push(DestinationTemplate {
                    host,
                    subset,
                    port,
                    weight,
                    headers: HeaderOps::none(),
                    host_rewrite: None,
                    field,
                });
            }
        }
        // As Istio: one destination may leave its weight out (it gets everything); several
        // must not all be 0.
        if destinations.len() == 1 && route.len() == 1 && route[0].weight.unwrap_or(0) == 0 {
            destinations[0].weight = 100;
        } else if destinations.len() > 1 && destinations.iter().all(|d| d.weight == 0) {
            cx.error(
                &format!("{f}.route"),
                ErrorKind::Note("total destination weight = 0".into()),
            );
        }
        if cx.error_count() != errors_before {
            continue;
        }
        out.push(L4RuleTemplate {
            name: format!("{}/{}#{f}", vs.namespace, vs.name).into(),
            matches: compiled,
            destinations,
        });
    }
    out
}

fn compile_match(
    vs: &Resource<config::VirtualServiceSpec>,
    kind: L4Kind,
    m: &config::L4MatchAttributes,
    f: &str,
    hosts: &[String],
    cx: &mut Ctx<'_>,
) -> Option<L4MatchTemplate> {
    let errors_before = cx.error_count();
    let port = m
        .port
        .and_then(|p| port_number(p, &format!("{f}.port"), cx));
    let gateways = (!m.gateways.is_empty()).then(|| {
        m.gateways
            .iter()
            .filter_map(|g| resolve_gateway_ref(g, &vs.namespace))
            .collect()
    });
    if !m.destination_subnets.is_empty() {
        cx.warn(
            &format!("{f}.destinationSubnets"),
            ErrorKind::NotYetSupported {
                what: "matching the connection's destination address".into(),
                ignored: true,
            },
        );
    }
    let mut sni_hosts = Vec::new();
    match kind {
        L4Kind::Tls if m.sni_hosts.is_empty() => {
            cx.error(&format!("{f}.sniHosts"), ErrorKind::Missing);
        }
        L4Kind::Tls => {
            for (i, sni) in m.sni_hosts.iter().enumerate() {
                let sni = sni.to_ascii_lowercase();
                if !hosts.iter().any(|h| host_within(&sni, h)) {
                    cx.error(
                        &format!("{f}.sniHosts[{i}]"),
                        invalid(
                            "SNI host",
                            &sni,
                            "must lie inside one of the VirtualService's hosts",
                        ),
                    );
                    continue;
                }
                sni_hosts.push(sni);
            }
        }
        L4Kind::Tcp if !m.sni_hosts.is_empty() => {
            cx.warn(
                &format!("{f}.sniHosts"),
                ErrorKind::Note("sniHosts has no effect in a tcp route; ignored".into()),
            );
        }
        L4Kind::Tcp => {}
    }
    if cx.error_count() != errors_before {
        return None;
    }
    Some(L4MatchTemplate {
        port,
        gateways,
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone(),
        sni_hosts,
    })
}

/// Whether a match applies on `port` of gateway `gw_ref`, as istiod's `l4SingleMatch`: listed
/// gateways decide; source labels and namespace are checked against the gateway "pod".
fn applies(m: &L4MatchTemplate, port: u16, gw_ref: &str, opts: &Options) -> bool {
    m.port.is_none_or(|p| p == port)
        && match &m.gateways {
            Some(list) => list.iter().any(|g| g == gw_ref),
            None => true,
        }
        && m.source_labels
            .iter()
            .all(|(k, v)| opts.proxy_labels.get(k) == Some(v))
        && m.source_namespace
            .as_ref()
            .is_none_or(|ns| *ns == opts.proxy_namespace)
}

/// The routes of a TLS-passthrough (`kind` Tls) or TCP port from its servers (`(gateway,
/// server)` indexes in Gateway order).
pub(super) fn build_port(
    tables: &mut Tables<'_>,
    servers: &[(usize, usize)],
    kind: L4Kind,
    port: u16,
    report: &mut Report,
) -> L4Table {
    let (resources, templates, opts) = (tables.resources, tables.templates, tables.opts);
    let mut sni = SniTable::default();
    for &(g, s) in servers {
        let gw = &resources.gateways[g];
        let gw_ref = format!("{}/{}", gw.namespace, gw.name);
        let server = &gw.spec.servers[s];
        for i in 0..tables.vs_order.len() {
            let v = tables.vs_order[i];
            let vs = &resources.virtual_services[v];
            let t = &templates[v];
            if !t.gateways.contains(&gw_ref)
                || !exported_to(&vs.spec.export_to, &vs.namespace, &opts.proxy_namespace)
            {
                continue;
            }
            let bound = server.hosts.iter().any(|sh| {
                let (ns, h) = split_server_host(sh, &gw.namespace);
                ns.is_none_or(|ns| ns == vs.namespace)
                    && t.hosts.iter().any(|vh| intersect(h, vh).is_some())
            });
            if !bound {
                continue;
            }
            let rules = match kind {
                L4Kind::Tls => &t.tls,
                L4Kind::Tcp => &t.tcp,
            };
            for rule in rules {
                let applying: Vec<&L4MatchTemplate> = rule
                    .matches
                    .iter()
                    .filter(|m| applies(m, port, &gw_ref, opts))
                    .collect();
                if kind == L4Kind::Tcp {
                    if rule.matches.is_empty() || !applying.is_empty() {
                        // The first matching tcp route of the first bound VirtualService wins.
                        let route = resolve(tables, rule, port, vs, report);
                        return L4Table::Tcp(Some(route));
                    }
                    continue;
                }
                if applying.is_empty() {
                    continue;
                }
                let route = resolve(tables, rule, port, vs, report);
                for m in applying {
                    for name in &m.sni_hosts {
                        if !sni.insert(name, route.clone()) {
                            report.warn(
                                &vs.source,
                                rule.name.rsplit('#').next().unwrap_or("spec.tls").to_owned(),
                                ErrorKind::Note(format!(
                                    "SNI host {name} on port {port} is already matched by an earlier tls route: this match is skipped (as istiod does)"
                                )),
                            );
                        }
                    }
                }
            }
        }
    }
    match kind {
        L4Kind::Tls => L4Table::Passthrough(sni),
        L4Kind::Tcp => L4Table::Tcp(None),
    }
}

/// Resolves a rule's destinations to clusters on `port`.
fn resolve(
    tables: &mut Tables<'_>,
    rule: &L4RuleTemplate,
    port: u16,
    vs: &Resource<config::VirtualServiceSpec>,
    report: &mut Report,
) -> Arc<L4Route> {
    let clusters: Vec<L4Cluster> = rule
        .destinations
        .iter()
        .map(|d| {
            let (cluster, key) = tables.clusters.resolve(d, port, vs, report);
            L4Cluster {
                cluster,
                key,
                weight: d.weight,
            }
        })
        .collect();
    let idle_timeout = match rule.destinations.first() {
        Some(d) => tables.clusters.tunnel_idle_timeout(d, vs),
        None => Some(TCP_IDLE_TIMEOUT),
    };
    tables.summary.routes += 1;
    let total_weight = clusters
        .iter()
        .map(|c| u64::from(c.weight))
        .sum::<u64>()
        .max(1);
    Arc::new(L4Route {
        name: rule.name.clone(),
        clusters,
        total_weight,
        idle_timeout,
    })
}
