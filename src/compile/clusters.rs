//! Destinations → clusters: ServiceEntry lookup, DestinationRule subsets, endpoint ports,
//! the Kubernetes-Service DNS fallback for hosts no ServiceEntry declares, and the cluster's TLS
//! origination (`origin.rs`).

use super::field::fpath;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

// foldhash, not SipHash: keys come from the config, and these are looked up per destination.
use foldhash::HashMap;

use crate::config::duration::parse as parse_duration;
use crate::config::{self, ErrorKind, Report, Resource, Resources};
use crate::route::{ClusterId, TCP_IDLE_TIMEOUT};
use crate::upstream::{ClusterSpec, Discovery, EndpointSpec, OriginTls, Protocol};

use super::names::{exported_to, host_within, resolve_short_name};
use super::policy::{effective_policy, Policy};
use super::templates::DestinationTemplate;
use super::Options;

/// Istio's root namespace, searched last for DestinationRules.
const ROOT_NAMESPACE: &str = "istio-system";

/// One namespace's DestinationRules (indexes, in resource order).
#[derive(Default)]
struct NamespaceRules {
    /// By host, for hosts without a wildcard: such a rule applies to that host only.
    exact: HashMap<String, Vec<usize>>,
    /// `*` and `*.suffix` hosts, searched for the longest that contains the host.
    wildcard: Vec<(usize, String)>,
}

/// Interns clusters by key while listeners are built.
pub(super) struct Clusters<'a> {
    resources: &'a Resources,
    opts: &'a Options,
    /// ServiceEntry host → indices of entries declaring it (visible to the proxy namespace).
    services: HashMap<&'a str, Vec<usize>>,
    /// Namespace → its DestinationRules by `host` (lower-cased and fully qualified): computed
    /// once, not per cluster (a scan of every rule, with two allocations each, per cluster was a
    /// tenth of compile time with 500 rules).
    rules_by_namespace: HashMap<&'a str, NamespaceRules>,
    pub specs: Vec<ClusterSpec>,
    /// Key → cluster, and the key as every route destination to it holds it (one allocation).
    by_key: HashMap<String, (Option<ClusterId>, Arc<str>)>,
}

impl<'a> Clusters<'a> {
    pub fn new(resources: &'a Resources, opts: &'a Options) -> Self {
        let mut services: HashMap<&str, Vec<usize>> = HashMap::default();
        for (i, se) in resources.service_entries.iter().enumerate() {
            if !exported_to(&se.spec.export_to, &se.namespace, &opts.proxy_namespace) {
                continue;
            }
            for h in &se.spec.hosts {
                services.entry(h.as_str()).or_default().push(i);
            }
        }
        let mut rules_by_namespace: HashMap<&str, NamespaceRules> = HashMap::default();
        for (i, dr) in resources.destination_rules.iter().enumerate() {
            if let Some(host) = dr.spec.host.as_deref() {
                let host = resolve_short_name(&host.to_ascii_lowercase(), &dr.namespace);
                let rules = rules_by_namespace.entry(dr.namespace.as_str()).or_default();
                if host.starts_with('*') {
                    rules.wildcard.push((i, host));
                } else {
                    rules.exact.entry(host).or_default().push(i);
                }
            }
        }
        Clusters {
            resources,
            opts,
            services,
            rules_by_namespace,
            specs: Vec::new(),
            by_key: HashMap::default(),
        }
    }

    /// Resolves a route destination on a listener port to a cluster (`None`: 503 `NC`).
    pub fn resolve(
        &mut self,
        d: &DestinationTemplate,
        listener_port: u16,
        vs: &Resource<config::VirtualServiceSpec>,
        report: &mut Report,
    ) -> (Option<ClusterId>, Arc<str>) {
        let service = self.service(&d.host, vs);
        let port = d.port.unwrap_or_else(|| match service {
            Some(se) if se.spec.ports.len() == 1 => {
                se.spec.ports[0].number.unwrap_or(0).clamp(0, 65535) as u16
            }
            _ => listener_port,
        });
        let key = format!(
            "outbound|{}|{}|{}",
            port,
            d.subset.as_deref().unwrap_or(""),
            d.host
        );
        if let Some((id, shared)) = self.by_key.get(&key) {
            return (*id, shared.clone());
        }
        let rules = self.destination_rules(&d.host, service_namespace(&d.host, service, vs));
        let subset = match &d.subset {
            None => None,
            Some(name) => {
                let found = rules.iter().find_map(|dr| {
                    dr.spec
                        .subsets
                        .iter()
                        .find(|s| s.name.as_deref() == Some(name.as_str()))
                        .map(|s| (*dr, s))
                });
                if found.is_none() {
                    report.warn(
                        &vs.source,
                        format!("{}.subset", d.field),
                        ErrorKind::UnknownSubset {
                            host: d.host.clone(),
                            subset: name.clone(),
                        },
                    );
                    let shared: Arc<str> = key.as_str().into();
                    self.by_key.insert(key, (None, shared.clone()));
                    return (None, shared);
                }
                found
            }
        };
        let spec = self.build(
            d,
            port,
            service,
            rules.first().copied(),
            subset,
            &key,
            vs,
            report,
        );
        let id = spec.map(|s| {
            self.specs.push(s);
            self.specs.len() - 1
        });
        let shared: Arc<str> = key.as_str().into();
        self.by_key.insert(key, (id, shared.clone()));
        (id, shared)
    }

    /// The TCP proxy idle timeout of a `tcp` / `tls` route whose first destination is `d`, as
    /// istiod sets it: the top-level `trafficPolicy.connectionPool.tcp.idleTimeout` of the host's
    /// DestinationRule (subset and port-level policies are not read); unset: Envoy's 1 h; `0s`:
    /// none (`None`).
    pub fn tunnel_idle_timeout(
        &self,
        d: &DestinationTemplate,
        vs: &Resource<config::VirtualServiceSpec>,
    ) -> Option<Duration> {
        let service = self.service(&d.host, vs);
        let rules = self.destination_rules(&d.host, service_namespace(&d.host, service, vs));
        let set = rules
            .first()
            .and_then(|dr| dr.spec.traffic_policy.as_ref())
            .and_then(|p| p.connection_pool.as_ref())
            .and_then(|p| p.tcp.as_ref())
            .and_then(|t| t.idle_timeout.as_deref())
            .and_then(|t| parse_duration(t).ok());
        match set {
            Some(t) if t.is_zero() => None,
            Some(t) => Some(t),
            None => Some(TCP_IDLE_TIMEOUT),
        }
    }

    /// The ServiceEntry declaring `host` (one in the VirtualService's namespace first).
    fn service(
        &self,
        host: &str,
        vs: &Resource<config::VirtualServiceSpec>,
    ) -> Option<&'a Resource<config::ServiceEntrySpec>> {
        let resources = self.resources;
        self.services.get(host).and_then(|list| {
            list.iter()
                .map(|&i| &resources.service_entries[i])
                .find(|se| se.namespace == vs.namespace)
                .or_else(|| list.first().map(|&i| &resources.service_entries[i]))
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        d: &DestinationTemplate,
        port: u16,
        service: Option<&Resource<config::ServiceEntrySpec>>,
        rule: Option<&Resource<config::DestinationRuleSpec>>,
        subset: Option<(&Resource<config::DestinationRuleSpec>, &config::Subset)>,
        key: &str,
        vs: &Resource<config::VirtualServiceSpec>,
        report: &mut Report,
    ) -> Option<ClusterSpec> {
        let labels: BTreeMap<String, String> =
            subset.map(|(_, s)| s.labels.clone()).unwrap_or_default();
        let mut policy = effective_policy(rule.map(|r| &r.spec), subset.map(|(_, s)| s), port);
        if let Some(r) = rule {
            for (field, note) in std::mem::take(&mut policy.notes) {
                report.warn(
                    &r.source,
                    fpath!("spec.trafficPolicy.", field),
                    ErrorKind::Note(note),
                );
            }
        }
        let tls = policy.tls.take().and_then(|(field, t)| {
            let to = super::origin::Destination {
                host: &d.host,
                port,
                subset: d.subset.as_deref(),
                service_sans: service.map_or(&[][..], |se| &se.spec.subject_alt_names[..]),
            };
            let mesh = self.opts.mesh_certs_dir.as_deref();
            super::origin::origin_tls(&t, &field, rule, &to, mesh)
        });
        let mut protocol = if policy.h2_upgrade {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        let discovery = match service {
            Some(se) => {
                let svc_port = se.spec.ports.iter().find(|p| p.number == Some(port as i64));
                let Some(svc_port) = svc_port else {
                    if !se.spec.ports.is_empty() {
                        report.warn(&vs.source, d.field.clone(), ErrorKind::Note(format!(
                            "port {port} is not declared by ServiceEntry {}/{}; requests get 503 (NC)",
                            se.namespace, se.name
                        )));
                        return None;
                    }
                    return Some(self.spec(key, d, port, Discovery::Empty, protocol, policy, tls));
                };
                if let Some(p) = &svc_port.protocol {
                    if matches!(
                        p.to_ascii_uppercase().as_str(),
                        "HTTP2" | "GRPC" | "GRPC-WEB"
                    ) {
                        protocol = Protocol::Http2;
                    }
                }
                let target = |ep: &config::WorkloadEntry| -> u16 {
                    svc_port
                        .name
                        .as_ref()
                        .and_then(|n| ep.ports.get(n))
                        .copied()
                        .or(svc_port.target_port)
                        .unwrap_or(port as i64)
                        .clamp(1, 65535) as u16
                };
                let selected: Vec<&config::WorkloadEntry> = se
                    .spec
                    .endpoints
                    .iter()
                    .filter(|ep| labels.iter().all(|(k, v)| ep.labels.get(k) == Some(v)))
                    .collect();
                let weight = |ep: &config::WorkloadEntry| {
                    ep.weight.unwrap_or(1).clamp(1, i32::MAX as i64) as u32
                };
                match se.spec.resolution.as_deref().unwrap_or("NONE") {
                    "STATIC" => Discovery::Static(
                        selected
                            .iter()
                            .filter_map(|ep| {
                                let ip: IpAddr = ep.address.as_deref()?.parse().ok()?;
                                Some(EndpointSpec {
                                    addr: SocketAddr::new(ip, target(ep)),
                                    weight: weight(ep),
                                })
                            })
                            .collect(),
                    ),
                    "DNS" | "DNS_ROUND_ROBIN" => {
                        if se.spec.endpoints.is_empty() {
                            let target_port =
                                svc_port.target_port.unwrap_or(port as i64).clamp(1, 65535) as u16;
                            Discovery::Dns {
                                names: vec![(d.host.clone(), target_port, 1)],
                                first_only: false,
                            }
                        } else if selected.is_empty() {
                            // istiod creates no DNS cluster without endpoints: 503 NC.
                            return None;
                        } else {
                            Discovery::Dns {
                                names: selected
                                    .iter()
                                    .filter_map(|ep| {
                                        Some((ep.address.clone()?, target(ep), weight(ep)))
                                    })
                                    .collect(),
                                first_only: false,
                            }
                        }
                    }
                    "DYNAMIC_DNS" => {
                        report.warn(
                            &se.source,
                            "spec.resolution",
                            ErrorKind::NotYetSupported {
                                what: "DYNAMIC_DNS resolution".into(),
                                ignored: false,
                            },
                        );
                        return None;
                    }
                    _ => Discovery::Empty,
                }
            }
            None => {
                if !labels.is_empty() {
                    report.warn(&vs.source, format!("{}.subset", d.field), ErrorKind::Note(format!(
                        "subset {:?} selects endpoints by labels, but {} is resolved through DNS (no ServiceEntry), so no endpoint has labels; requests get 503 (NC)",
                        d.subset.as_deref().unwrap_or(""), d.host
                    )));
                    return None;
                }
                // A Kubernetes Service name: the FQDN first, then the name as written.
                let mut names = vec![(d.host.clone(), port, 1)];
                if let Some(short) = d
                    .host
                    .strip_suffix(".svc.cluster.local")
                    .and_then(|h| h.split('.').next())
                {
                    names.push((short.to_owned(), port, 1));
                }
                Discovery::Dns {
                    names,
                    first_only: true,
                }
            }
        };
        Some(self.spec(key, d, port, discovery, protocol, policy, tls))
    }

    #[allow(clippy::too_many_arguments)]
    fn spec(
        &self,
        key: &str,
        d: &DestinationTemplate,
        port: u16,
        discovery: Discovery,
        protocol: Protocol,
        policy: Policy,
        tls: Option<OriginTls>,
    ) -> ClusterSpec {
        ClusterSpec {
            key: key.to_owned(),
            host: d.host.clone(),
            port,
            subset: d.subset.clone(),
            discovery,
            protocol,
            connection: policy.connection,
            lb: policy.lb,
            outlier: policy.outlier,
            limits: policy.limits,
            // ALPN `h2` only for HTTP/2 clusters, as Istio sets it.
            tls: tls.map(|t| OriginTls {
                alpn_h2: protocol == Protocol::Http2,
                ..t
            }),
        }
    }

    /// DestinationRules for a host, in Istio's lookup order: proxy namespace, the service's
    /// namespace, the root namespace; the first namespace with a match wins, and within it the
    /// exact host beats the longest wildcard. Several rules for the same host are merged in order.
    fn destination_rules(
        &self,
        host: &str,
        service_ns: &str,
    ) -> Vec<&'a Resource<config::DestinationRuleSpec>> {
        let proxy_ns = self.opts.proxy_namespace.as_str();
        let order = [proxy_ns, service_ns, ROOT_NAMESPACE];
        for (i, ns) in order.iter().enumerate() {
            if order[..i].contains(ns) {
                continue;
            }
            let Some(rules) = self.rules_by_namespace.get(ns) else {
                continue;
            };
            let visible = |dr: &Resource<config::DestinationRuleSpec>| {
                *ns == proxy_ns || exported_to(&dr.spec.export_to, &dr.namespace, proxy_ns)
            };
            // A rule for exactly this host wins over every wildcard.
            let exact: Vec<_> = rules
                .exact
                .get(host)
                .into_iter()
                .flatten()
                .map(|&index| &self.resources.destination_rules[index])
                .filter(|dr| visible(dr))
                .collect();
            if !exact.is_empty() {
                return exact;
            }
            let mut best: Option<(usize, &str)> = None;
            let mut found = Vec::new();
            for (index, dr_host) in &rules.wildcard {
                let dr = &self.resources.destination_rules[*index];
                if !visible(dr) {
                    continue;
                }
                let dr_host = dr_host.as_str();
                if !host_within(host, dr_host) {
                    continue;
                }
                let rank = if dr_host == host {
                    usize::MAX
                } else {
                    dr_host.len()
                };
                match &best {
                    Some((r, h)) if *r > rank || (*r == rank && *h != dr_host) => continue,
                    Some((r, _)) if *r < rank => found.clear(),
                    _ => {}
                }
                best = Some((rank, dr_host));
                found.push(dr);
            }
            if !found.is_empty() {
                return found;
            }
        }
        Vec::new()
    }
}

/// The namespace DestinationRules of `host` are looked up in after the proxy's: its
/// ServiceEntry's, else the namespace part of a Kubernetes-style name, else the VirtualService's.
fn service_namespace<'r>(
    host: &'r str,
    service: Option<&'r Resource<config::ServiceEntrySpec>>,
    vs: &'r Resource<config::VirtualServiceSpec>,
) -> &'r str {
    match service {
        Some(se) => se.namespace.as_str(),
        None => host.split('.').nth(1).unwrap_or(&vs.namespace),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, ns: &str, host: &str, export: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
             metadata: {{name: {name}, namespace: {ns}}}\n\
             spec: {{host: '{host}', exportTo: [{export}]}}\n---\n"
        )
    }

    /// Which DestinationRules apply to a host: an exact host beats the longest wildcard, which
    /// beats `*`; rules not exported to the proxy's namespace are passed over.
    #[test]
    fn exact_host_beats_longest_wildcard_and_hidden_rules_are_passed_over() {
        let yaml = [
            rule("star", "team", "*", "'*'"),
            rule("wild", "team", "*.example.com", "'*'"),
            rule("wild-api", "team", "*.api.example.com", "'*'"),
            rule("exact-1", "team", "api.example.com", "'*'"),
            rule("exact-2", "team", "api.example.com", "'*'"),
            rule("hidden", "team", "db.example.com", "'.'"),
            rule("wild-same", "team", "*.Example.com", "'*'"),
        ]
        .concat();
        let (res, report) = crate::config::load_str(&yaml, "t.yaml", "default");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let opts = Options::default();
        let clusters = Clusters::new(&res, &opts);
        let names = |host: &str| -> Vec<String> {
            clusters
                .destination_rules(host, "team")
                .iter()
                .map(|dr| dr.name.clone())
                .collect()
        };
        assert_eq!(names("api.example.com"), ["exact-1", "exact-2"]);
        assert_eq!(names("v1.api.example.com"), ["wild-api"]);
        // Two wildcards of one host (case aside): both apply, in resource order.
        assert_eq!(names("web.example.com"), ["wild", "wild-same"]);
        assert_eq!(names("db.example.com"), ["wild", "wild-same"]);
        assert_eq!(names("*.example.com"), ["wild", "wild-same"]);
        assert_eq!(names("example.org"), ["star"]);
        assert!(clusters
            .destination_rules("api.example.com", "other")
            .is_empty());
    }
}
