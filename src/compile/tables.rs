//! The route table of a set of Gateway servers: the virtual hosts formed by intersecting each
//! bound VirtualService's hosts with the servers' hosts, and the VirtualServices' routes
//! instantiated for the port (build-time conditions applied, destinations resolved).
//! May not touch: how servers are grouped into listeners and filter chains (`listeners`, `chains`).

use foldhash::{HashMap, HashSet};
use std::sync::Arc;

use crate::config::{self, Report, Resource, Resources};
use crate::route::{
    Forward, Mirror, RedirectPort, Route, RouteAction, RouteTable, VirtualHost, WeightedCluster,
};

use super::clusters::Clusters;
use super::names::{exported_to, intersect, split_server_host};
use super::templates::ActionTemplate;
use super::templates::VsTemplate;
use super::{Options, Summary};

/// What building the tables of one config shares: the resources, VirtualServices in order, and
/// the clusters routes resolve to.
pub(super) struct Tables<'a> {
    pub resources: &'a Resources,
    pub templates: &'a [VsTemplate],
    pub opts: &'a Options,
    pub vs_order: Vec<usize>,
    pub clusters: Clusters<'a>,
    pub summary: Summary,
}

// === impl Tables ===

impl<'a> Tables<'a> {
    pub fn new(resources: &'a Resources, templates: &'a [VsTemplate], opts: &'a Options) -> Self {
        let mut vs_order: Vec<usize> = (0..resources.virtual_services.len()).collect();
        vs_order.sort_by(|&a, &b| {
            let (a, b) = (
                &resources.virtual_services[a],
                &resources.virtual_services[b],
            );
            (&a.name, &a.namespace).cmp(&(&b.name, &b.namespace))
        });
        Tables {
            resources,
            templates,
            opts,
            vs_order,
            clusters: Clusters::new(resources, opts),
            summary: Summary::default(),
        }
    }

    /// The route table of `servers` (`(gateway, server)` indexes, in Gateway order) on `port`.
    pub fn route_table(
        &mut self,
        servers: &[(usize, usize)],
        port: u16,
        report: &mut Report,
    ) -> RouteTable {
        let (resources, templates, opts) = (self.resources, self.templates, self.opts);
        let mut vhosts: Vec<VirtualHost> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::default();
        let mut added: HashSet<(usize, usize)> = HashSet::default();
        for &(g, s) in servers {
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
            for i in 0..self.vs_order.len() {
                let v = self.vs_order[i];
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
                let mut targets = Vec::with_capacity(names.len());
                for n in names {
                    let i = vhost(n, &mut vhosts);
                    vhosts[i].require_tls |= require_tls;
                    if added.insert((i, v)) {
                        targets.push(i);
                    }
                }
                // Instantiated for each use, not cached and cloned: the last (usually only)
                // virtual host takes the routes themselves, and the transient clones once left
                // the heap fragmented. Instantiating again is cheap and changes nothing (clusters
                // are interned, their warnings given once), so it also runs when no virtual host
                // takes the routes, as before.
                let routes = instantiate(vs, t, port, &gw_ref, opts, &mut self.clusters, report);
                let Some((&last, rest)) = targets.split_last() else {
                    continue;
                };
                for &i in rest {
                    vhosts[i].routes.extend(routes.iter().cloned());
                }
                if vhosts[last].routes.is_empty() {
                    vhosts[last].routes = routes;
                } else {
                    vhosts[last].routes.extend(routes);
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
            self.summary.routes += vh.routes.len();
        }
        self.summary.virtual_hosts += vhosts.len();
        table.vhosts = vhosts;
        table
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
    let mut out = Vec::with_capacity(t.routes.len());
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
                // Exact capacity: a Vec grown by push holds at least 4 (224-byte) entries.
                let mut weighted = Vec::with_capacity(f.destinations.len());
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
