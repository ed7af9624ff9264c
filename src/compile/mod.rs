//! Typed model → compiled route tables and cluster specs. Pure and synchronous.
//! Owns validation, cross-resource lookups (VirtualService → Gateway, subset → DestinationRule),
//! defaults, and the order rules of Istio. May not touch: sockets, ArcSwap, clocks, files.
//!
//! Flow: `validate` each resource → `virtual_services` + `routes::compile_http` per
//! VirtualService (port-independent templates) → `listeners::build` per Gateway server port: a
//! plaintext port gets one route table, an HTTPS or TLS-terminating port one filter chain per
//! server (`chains`, TLS policy from `tls`; a `protocol: TLS` server's chain has a `tcp` route from
//! `l4_routes`), a passthrough or TCP port an `L4Table` (`l4_routes`); `tables` intersects hosts,
//! instantiates routes per port and resolves destinations through `clusters`.

mod actions;
mod admit;
mod chains;
mod clusters;
mod cors;
mod delegate;
mod destination;
mod field;
mod headers;
mod l4_routes;
mod listeners;
mod matchers;
mod names;
mod origin;
mod policy;
mod resilience;
mod routes;
mod tables;
mod templates;
pub mod tls;
mod validate;
mod virtual_services;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ErrorKind, Report, Resources, Source};
use crate::route::RouteTable;
use crate::upstream::ClusterSpec;

pub use admit::{admit, Admitted, Skipped};
pub use matchers::RegexCache;
pub use names::{host_within, resolve_short_name};

/// Where meshgate sits, as Istio would see the gateway pod.
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespace of the gateway "pod": scopes exportTo and DestinationRule lookup.
    /// Default is `istio-system`.
    pub proxy_namespace: String,
    /// Labels of the gateway "pod", for `sourceLabels` matches.
    /// Default is `{istio: ingressgateway, app: istio-ingressgateway}`.
    pub proxy_labels: BTreeMap<String, String>,
    /// The mesh workload identity for DestinationRule `ISTIO_MUTUAL`: a folder in Istio's
    /// file-mounted certificate layout (`cert-chain.pem`, `key.pem`, `root-cert.pem`). Default is
    /// none: `ISTIO_MUTUAL` is then sent in plain text, with a warning.
    pub mesh_certs_dir: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            proxy_namespace: "istio-system".into(),
            proxy_labels: [("istio", "ingressgateway"), ("app", "istio-ingressgateway")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            mesh_certs_dir: None,
        }
    }
}

/// The compiled config: one route table per listener port, and every cluster routes refer to.
#[derive(Debug, Default)]
pub struct Compiled {
    pub listeners: Vec<Listener>,
    pub clusters: Vec<ClusterSpec>,
    pub summary: Summary,
    /// The regexes the routes use, by pattern: what the next compile can take instead of
    /// compiling them again ([`compile_reusing`], [`admit`]).
    pub regexes: RegexCache,
}

/// A listener port (a Gateway server `port.number`) and its routes.
#[derive(Debug)]
pub struct Listener {
    pub port: u16,
    /// A plaintext port's routes (its HTTP servers merged). Empty on an HTTPS port.
    pub table: RouteTable,
    /// An HTTPS port's filter chains, one per server, chosen by SNI. Empty on a plaintext port.
    pub chains: Vec<FilterChain>,
    /// A TLS-passthrough or TCP port's routes (`l4_routes`); `table` and `chains` are empty.
    pub l4: Option<crate::route::L4Table>,
}

/// One terminating HTTPS or TLS server: the SNI names it answers, its TLS policy and its own routes.
#[derive(Debug)]
pub struct FilterChain {
    /// Istio's route name: `https.<port>.<port name>.<gateway>.<namespace>`.
    pub name: Arc<str>,
    /// Lower-case server hosts without namespace; `*` matches any SNI and none.
    pub server_names: Vec<String>,
    pub tls: Arc<tls::ServerTls>,
    /// The virtual hosts of this server's hosts only (empty for a TLS-terminated TCP server).
    pub table: RouteTable,
    /// A `protocol: TLS` server terminated here: its `tcp` route (`L4Table::Tcp`), which the
    /// decrypted stream is tunnelled by. `None`: an HTTPS server, served as HTTP by `table`.
    pub tcp: Option<crate::route::L4Table>,
    /// The Gateway, and the field of its `tls` block, for errors about its certificates.
    pub source: Source,
    pub field: String,
}

/// Counts for the one-line summary of `meshgate validate` and reload logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub gateways: usize,
    pub virtual_services: usize,
    pub destination_rules: usize,
    pub service_entries: usize,
    pub listeners: usize,
    pub virtual_hosts: usize,
    pub routes: usize,
    pub clusters: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} Gateways, {} VirtualServices, {} DestinationRules, {} ServiceEntries → {} listeners, {} virtual hosts, {} routes, {} clusters",
            self.gateways,
            self.virtual_services,
            self.destination_rules,
            self.service_entries,
            self.listeners,
            self.virtual_hosts,
            self.routes,
            self.clusters
        )
    }
}

/// Validates and compiles, all or nothing: `None` when there is any error; the report has them
/// all. What `meshgate validate` and `--strict` use; serving uses [`admit`], which skips bad
/// resources instead.
pub fn compile(resources: &Resources, opts: &Options) -> (Option<Compiled>, Report) {
    compile_reusing(resources, opts, &RegexCache::default())
}

/// [`compile`], taking the regexes `reuse` has (a served config's [`Compiled::regexes`]) instead
/// of compiling them again.
pub fn compile_reusing(
    resources: &Resources,
    opts: &Options,
    reuse: &RegexCache,
) -> (Option<Compiled>, Report) {
    let (checked, mut report) = check(resources, opts, &HashSet::new(), reuse);
    if !report.is_ok() {
        return (None, report);
    }
    let compiled = listeners::build(resources, checked, opts, &mut report);
    (Some(compiled), report)
}

/// Resources that passed [`check`]: the VirtualServices' compiled route templates, and the
/// regexes they use.
pub(crate) struct Checked {
    templates: Vec<templates::VsTemplate>,
    regexes: RegexCache,
}

/// Validates every resource on its own. Every error it reports names one resource
/// (`Source::resource`), which is what lets [`admit`] skip exactly the resources at fault.
/// `skipped_gateways` (`ns/name`) exist but are not served: references to them are not dangling.
/// Regexes in `reuse` are taken from it, not compiled.
fn check(
    resources: &Resources,
    opts: &Options,
    skipped_gateways: &HashSet<String>,
    reuse: &RegexCache,
) -> (Checked, Report) {
    let mut report = Report::default();
    for gw in &resources.gateways {
        let cx = &mut Ctx::new(&gw.source, &mut report);
        validate::gateway(gw, cx);
        validate::unsupported::gateway(gw, opts, cx);
    }
    for dr in &resources.destination_rules {
        let cx = &mut Ctx::new(&dr.source, &mut report);
        validate::destination_rule(dr, opts, cx);
        validate::unsupported::destination_rule(dr, cx);
    }
    for se in &resources.service_entries {
        let cx = &mut Ctx::new(&se.source, &mut report);
        validate::service_entry(se, cx);
        validate::unsupported::service_entry(se, cx);
    }
    for vs in &resources.virtual_services {
        validate::unsupported::virtual_service(vs, &mut Ctx::new(&vs.source, &mut report));
    }
    let (templates, regexes) =
        virtual_services::virtual_services(resources, skipped_gateways, reuse, &mut report);
    (Checked { templates, regexes }, report)
}

/// Report helper bound to one resource; while VirtualServices compile, also the regexes compiled
/// so far (`matchers::Regexes`), so that routes with the same pattern share one.
pub(crate) struct Ctx<'a> {
    source: &'a Source,
    report: &'a mut Report,
    regexes: Option<&'a mut matchers::Regexes>,
}

impl<'a> Ctx<'a> {
    fn new(source: &'a Source, report: &'a mut Report) -> Self {
        Ctx {
            source,
            report,
            regexes: None,
        }
    }

    fn with_regexes(
        source: &'a Source,
        report: &'a mut Report,
        regexes: &'a mut matchers::Regexes,
    ) -> Self {
        Ctx {
            source,
            report,
            regexes: Some(regexes),
        }
    }

    fn error(&mut self, field: &str, kind: ErrorKind) {
        self.report.error(self.source, field, kind);
    }

    fn warn(&mut self, field: &str, kind: ErrorKind) {
        self.report.warn(self.source, field, kind);
    }

    fn error_count(&self) -> usize {
        self.report.errors.len()
    }
}

/// Parses a duration field that Istio requires to be ≥ 1 ms and a whole number of milliseconds.
fn duration_field(value: &str, field: &str, cx: &mut Ctx<'_>) -> Option<Duration> {
    match crate::config::duration::parse(value) {
        Ok(d) if d < Duration::from_millis(1) => {
            cx.error(
                field,
                ErrorKind::BadDuration {
                    value: value.into(),
                    why: "must be at least 1ms",
                },
            );
            None
        }
        Ok(d) if d.subsec_nanos() % 1_000_000 != 0 => {
            cx.error(
                field,
                ErrorKind::BadDuration {
                    value: value.into(),
                    why: "must be a whole number of milliseconds",
                },
            );
            None
        }
        Ok(d) => Some(d),
        Err(why) => {
            cx.error(
                field,
                ErrorKind::BadDuration {
                    value: value.into(),
                    why,
                },
            );
            None
        }
    }
}
