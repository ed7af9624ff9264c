//! Gateways + VirtualServices → one route table per listener port.
//!
//! Istio's rules: servers of every Gateway are grouped by port; each VirtualService bound to a
//! Gateway contributes its routes to the virtual hosts formed by intersecting its hosts with the
//! server's hosts; VirtualServices are taken in (name, namespace) order; catch-all routes move to
//! the end of each virtual host.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::config::{self, ErrorKind, Report, Resource, Resources};
use crate::route::{
    Forward, Mirror, RedirectPort, Route, RouteAction, RouteTable, VirtualHost, WeightedCluster,
};

use super::clusters::Clusters;
use super::headers::invalid;
use super::names::{
    exported_to, host_error, intersect, resolve_gateway_ref, resolve_short_name, split_server_host,
};
use super::routes::{compile_http, ActionTemplate, RouteTemplate};
use super::validate;
use super::{Compiled, Ctx, Listener, Options, Summary};

/// A VirtualService after validation: resolved hosts and gateways plus its route templates.
pub(super) struct VsTemplate {
    pub hosts: Vec<String>,
    pub gateways: Vec<String>,
    pub routes: Vec<RouteTemplate>,
}

/// Validates every VirtualService and compiles its routes (index-aligned with the resources).
/// `skipped_gateways` exist but are not served (they have errors): a reference to one is a
/// warning, not a dangling reference.
pub(super) fn virtual_services(
    resources: &Resources,
    skipped_gateways: &HashSet<String>,
    report: &mut Report,
) -> Vec<VsTemplate> {
    let gateways: HashSet<String> = resources
        .gateways
        .iter()
        .map(|g| format!("{}/{}", g.namespace, g.name))
        .collect();
    let mut out = Vec::new();
    for vs in &resources.virtual_services {
        let mut cx = Ctx::new(&vs.source, report);
        let spec = &vs.spec;
        if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
            cx.error(
                "spec",
                ErrorKind::Note("one of http, tcp or tls must be provided".into()),
            );
        }
        if spec.hosts.is_empty() {
            // A delegate: used only through a root VirtualService's `http[].delegate`.
            for (set, what) in [
                (!spec.gateways.is_empty(), "spec.gateways"),
                (!spec.tcp.is_empty(), "spec.tcp"),
                (!spec.tls.is_empty(), "spec.tls"),
            ] {
                if set {
                    cx.error(
                        what,
                        ErrorKind::Note(
                            "not allowed in a delegate VirtualService (one without hosts)".into(),
                        ),
                    );
                }
            }
        }
        let mut hosts = Vec::new();
        for (i, h) in spec.hosts.iter().enumerate() {
            let f = format!("spec.hosts[{i}]");
            if let Some(why) = host_error(h) {
                cx.error(&f, invalid("host", h, why));
                continue;
            }
            let resolved = resolve_short_name(h, &vs.namespace);
            if let Some(j) = hosts.iter().position(|o: &String| {
                super::names::host_within(&resolved, o) || super::names::host_within(o, &resolved)
            }) {
                cx.error(
                    &f,
                    ErrorKind::Duplicate {
                        what: "host (overlaps another host of this VirtualService)",
                        value: h.clone(),
                        first: Some(format!("spec.hosts[{j}]")),
                    },
                );
            }
            hosts.push(resolved);
        }
        let mut resolved_gateways = Vec::new();
        for (i, g) in spec.gateways.iter().enumerate() {
            let Some(r) = resolve_gateway_ref(g, &vs.namespace) else {
                continue;
            };
            gateway_ref(
                &gateways,
                skipped_gateways,
                g,
                &r,
                &format!("spec.gateways[{i}]"),
                &mut cx,
            );
            resolved_gateways.push(r);
        }
        for (ri, r) in spec.http.iter().enumerate() {
            for (mi, m) in r.matches.iter().enumerate() {
                for (gi, g) in m.gateways.iter().enumerate() {
                    if let Some(rg) = resolve_gateway_ref(g, &vs.namespace) {
                        let f = format!("spec.http[{ri}].match[{mi}].gateways[{gi}]");
                        gateway_ref(&gateways, skipped_gateways, g, &rg, &f, &mut cx);
                    }
                }
            }
        }
        validate::export_to(&spec.export_to, false, &mut cx);
        if !spec.tcp.is_empty() {
            cx.warn(
                "spec.tcp",
                ErrorKind::NotYetSupported {
                    what: "tcp routes".into(),
                    ignored: true,
                },
            );
        }
        if !spec.tls.is_empty() {
            cx.warn(
                "spec.tls",
                ErrorKind::NotYetSupported {
                    what: "tls (SNI passthrough) routes".into(),
                    ignored: true,
                },
            );
        }
        let routes = compile_http(vs, resources, &mut cx);
        out.push(VsTemplate {
            hosts,
            gateways: resolved_gateways,
            routes,
        });
    }
    out
}

/// A reference to a Gateway: fine when it exists, a warning when it exists but was skipped, an
/// error (dangling) otherwise.
fn gateway_ref(
    existing: &HashSet<String>,
    skipped: &HashSet<String>,
    written: &str,
    resolved: &str,
    field: &str,
    cx: &mut Ctx<'_>,
) {
    if existing.contains(resolved) {
        return;
    }
    let kind = if skipped.contains(resolved) {
        ErrorKind::SkippedGateway {
            gateway: resolved.to_owned(),
        }
    } else {
        ErrorKind::UnknownGateway {
            gateway: written.to_owned(),
            resolved: resolved.to_owned(),
        }
    };
    if skipped.contains(resolved) {
        cx.warn(field, kind);
    } else {
        cx.error(field, kind);
    }
}

/// Builds the listeners. Errors have already been ruled out; this only adds warnings.
pub(super) fn build(
    resources: &Resources,
    templates: &[VsTemplate],
    opts: &Options,
    report: &mut Report,
) -> Compiled {
    let mut gw_order: Vec<usize> = (0..resources.gateways.len()).collect();
    gw_order.sort_by(|&a, &b| {
        let (a, b) = (&resources.gateways[a], &resources.gateways[b]);
        (&a.name, &a.namespace).cmp(&(&b.name, &b.namespace))
    });
    let mut vs_order: Vec<usize> = (0..resources.virtual_services.len()).collect();
    vs_order.sort_by(|&a, &b| {
        let (a, b) = (
            &resources.virtual_services[a],
            &resources.virtual_services[b],
        );
        (&a.name, &a.namespace).cmp(&(&b.name, &b.namespace))
    });

    // Servers grouped by port, in Gateway order.
    let mut ports: BTreeMap<u16, Vec<(usize, usize)>> = BTreeMap::new();
    for &g in &gw_order {
        let gw = &resources.gateways[g];
        for (s, server) in gw.spec.servers.iter().enumerate() {
            let Some(port) = &server.port else { continue };
            let number = port.number.unwrap_or(0) as u16;
            let proto = port.protocol.as_deref().unwrap_or("").to_ascii_uppercase();
            let f = format!("spec.servers[{s}].port.protocol");
            match proto.as_str() {
                "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" => {}
                "HTTPS" | "TLS" => {
                    report.warn(
                        &gw.source,
                        f,
                        ErrorKind::NotYetSupported {
                            what: format!("{proto} servers (port {number})"),
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
            }
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
            ports.entry(number).or_default().push((g, s));
        }
    }

    let mut clusters = Clusters::new(resources, opts);
    let mut summary = Summary {
        gateways: resources.gateways.len(),
        virtual_services: resources.virtual_services.len(),
        destination_rules: resources.destination_rules.len(),
        service_entries: resources.service_entries.len(),
        ..Summary::default()
    };
    let mut listeners = Vec::new();
    for (port, servers) in ports {
        let mut vhosts: Vec<VirtualHost> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut added: HashSet<(usize, usize)> = HashSet::new();
        let mut instantiated: HashMap<(usize, String), Vec<Route>> = HashMap::new();
        for (g, s) in servers {
            let gw = &resources.gateways[g];
            let gw_ref = format!("{}/{}", gw.namespace, gw.name);
            let server = &gw.spec.servers[s];
            let require_tls = server.tls.as_ref().is_some_and(|t| t.https_redirect);
            let mut vhost = |name: String, vhosts: &mut Vec<VirtualHost>| -> usize {
                *by_name.entry(name.clone()).or_insert_with(|| {
                    vhosts.push(VirtualHost {
                        name: name.into(),
                        require_tls: false,
                        routes: Vec::new(),
                    });
                    vhosts.len() - 1
                })
            };
            for &v in &vs_order {
                let vs = &resources.virtual_services[v];
                let t = &templates[v];
                if !t.gateways.contains(&gw_ref)
                    || !exported_to(&vs.spec.export_to, &vs.namespace, &opts.proxy_namespace)
                {
                    continue;
                }
                let mut names = Vec::new();
                for sh in &server.hosts {
                    let (ns, h) = split_server_host(sh, &gw.namespace);
                    if ns.is_some_and(|ns| ns != vs.namespace) {
                        continue;
                    }
                    for vh in &t.hosts {
                        if let Some(n) = intersect(h, vh) {
                            let n = n.to_ascii_lowercase();
                            if !names.contains(&n) {
                                names.push(n);
                            }
                        }
                    }
                }
                if names.is_empty() {
                    continue;
                }
                let routes = instantiated.entry((v, gw_ref.clone())).or_insert_with(|| {
                    instantiate(vs, t, port, &gw_ref, opts, &mut clusters, report)
                });
                for n in names {
                    let i = vhost(n, &mut vhosts);
                    vhosts[i].require_tls |= require_tls;
                    if added.insert((i, v)) {
                        vhosts[i].routes.extend(routes.iter().cloned());
                    }
                }
            }
            if require_tls {
                for sh in &server.hosts {
                    let (_, h) = split_server_host(sh, &gw.namespace);
                    let i = vhost(h.to_ascii_lowercase(), &mut vhosts);
                    vhosts[i].require_tls = true;
                }
            }
        }
        let mut table = RouteTable::default();
        for (i, vh) in vhosts.iter_mut().enumerate() {
            // Stable: catch-alls keep their relative order at the end.
            vh.routes.sort_by_key(|r| r.matcher.is_catch_all());
            table.hosts.insert(&vh.name, i);
            summary.routes += vh.routes.len();
        }
        summary.virtual_hosts += vhosts.len();
        table.vhosts = vhosts;
        listeners.push(Listener { port, table });
    }
    summary.listeners = listeners.len();
    summary.clusters = clusters.specs.len();
    Compiled {
        listeners,
        clusters: clusters.specs,
        summary,
    }
}

/// Routes of one VirtualService for one (port, gateway): build-time conditions applied,
/// destinations resolved for this port.
fn instantiate(
    vs: &Resource<config::VirtualServiceSpec>,
    t: &VsTemplate,
    port: u16,
    gw_ref: &str,
    opts: &Options,
    clusters: &mut Clusters<'_>,
    report: &mut Report,
) -> Vec<Route> {
    let mut out = Vec::new();
    for rt in &t.routes {
        let kept: Vec<_> = rt
            .matches
            .iter()
            .filter(|m| {
                // As istiod's sourceMatchHTTP: listed gateways decide; otherwise the source
                // conditions are checked against the gateway "pod".
                m.port.is_none_or(|p| p == port)
                    && match &m.gateways {
                        Some(list) => list.iter().any(|g| g == gw_ref),
                        None => {
                            m.source_labels
                                .iter()
                                .all(|(k, v)| opts.proxy_labels.get(k) == Some(v))
                                && m.source_namespace
                                    .as_ref()
                                    .is_none_or(|ns| *ns == opts.proxy_namespace)
                        }
                    }
            })
            .collect();
        if kept.is_empty() {
            continue;
        }
        let action = Arc::new(match &rt.action {
            ActionTemplate::Direct(d) => RouteAction::Direct((**d).clone()),
            ActionTemplate::Redirect(r) => {
                let mut redirect = r.redirect.clone();
                if r.from_request_port {
                    redirect.port = RedirectPort::Explicit(port);
                }
                RouteAction::Redirect(redirect)
            }
            ActionTemplate::Forward(f) => {
                let mut weighted = Vec::new();
                for d in &f.destinations {
                    let (cluster, key) = clusters.resolve(d, port, vs, report);
                    weighted.push(WeightedCluster {
                        cluster,
                        key,
                        weight: d.weight,
                        headers: d.headers.clone(),
                        host_rewrite: d.host_rewrite.clone(),
                    });
                }
                let total_weight = weighted
                    .iter()
                    .map(|w| u64::from(w.weight))
                    .sum::<u64>()
                    .max(1);
                let mirrors = f
                    .mirrors
                    .iter()
                    .map(|m| {
                        let (cluster, key) = clusters.resolve(&m.destination, port, vs, report);
                        Mirror {
                            cluster,
                            key,
                            per_million: m.per_million,
                        }
                    })
                    .collect();
                RouteAction::Forward(Forward {
                    clusters: weighted,
                    total_weight,
                    rewrite: f.rewrite.clone(),
                    host_rewrite: f.host_rewrite.clone(),
                    headers: f.headers.clone(),
                    timeout: f.timeout,
                    retry: f.retry.clone(),
                    fault: f.fault.clone(),
                    mirrors,
                    cors: f.cors.clone(),
                })
            }
        });
        let mut catch_all = false;
        for m in kept {
            catch_all |= m.matcher.is_catch_all()
                && m.matcher
                    .path
                    .as_ref()
                    .is_none_or(|p| !matches!(&p.kind, crate::route::StrMatch::Exact(_)));
            out.push(Route {
                name: rt.name.clone(),
                origin: rt.origin.clone(),
                match_index: m.index,
                matcher: m.matcher.clone(),
                action: action.clone(),
            });
        }
        if catch_all {
            // istiod stops emitting a VirtualService's routes after a catch-all: they can never match.
            break;
        }
    }
    out
}
