//! VirtualServices → validated templates: resolved hosts and gateways, compiled route templates.
//! May not touch: listeners and ports (`listeners`/`tables` instantiate the templates per port).

use super::field::fpath;
use std::collections::HashSet;

use crate::config::{ErrorKind, Report, Resource, Resources, VirtualServiceSpec};

use super::headers::invalid;
use super::l4_routes::compile_l4;
use super::matchers::{RegexCache, Regexes};
use super::names::{host_error, resolve_gateway_ref, resolve_short_name};
use super::routes::compile_http;
use super::templates::{L4Kind, VsTemplate};
use super::validate;
use super::Ctx;

/// Validates every VirtualService and compiles its routes (index-aligned with the resources),
/// with the regexes of `seed` instead of compiling them again; returns the regexes they use.
/// `skipped_gateways` exist but are not served (they have errors): a reference to one is a
/// warning, not a dangling reference.
pub(super) fn virtual_services(
    resources: &Resources,
    skipped_gateways: &HashSet<String>,
    seed: &RegexCache,
    report: &mut Report,
) -> (Vec<VsTemplate>, RegexCache) {
    let gateways: HashSet<String> = resources
        .gateways
        .iter()
        .map(|g| format!("{}/{}", g.namespace, g.name))
        .collect();
    // VirtualServices compile apart, in parallel; their reports are merged in resource order.
    // Each thread shares compiled regexes among the routes it compiles.
    let (compiled, regexes) = crate::par::map_with_states(
        &resources.virtual_services,
        || Regexes::seeded(seed),
        |regexes, vs| {
            let mut own = Report::default();
            let cx = &mut Ctx::with_regexes(&vs.source, &mut own, regexes);
            let template = virtual_service(vs, resources, &gateways, skipped_gateways, cx);
            (template, own)
        },
    );
    let mut out = Vec::with_capacity(compiled.len());
    for (template, own) in compiled {
        report.extend(own);
        out.push(template);
    }
    (out, RegexCache::gather(regexes))
}

/// One VirtualService, validated and compiled. `gateways`: every Gateway's `namespace/name`.
fn virtual_service(
    vs: &Resource<VirtualServiceSpec>,
    resources: &Resources,
    gateways: &HashSet<String>,
    skipped_gateways: &HashSet<String>,
    cx: &mut Ctx<'_>,
) -> VsTemplate {
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
        let f = fpath!("spec.hosts[", i, "]");
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
                    first: Some(fpath!("spec.hosts[", j, "]")),
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
            gateways,
            skipped_gateways,
            g,
            &r,
            &fpath!("spec.gateways[", i, "]"),
            cx,
        );
        resolved_gateways.push(r);
    }
    let match_gateways =
        spec.http
            .iter()
            .enumerate()
            .flat_map(|(ri, r)| {
                r.matches.iter().enumerate().map(move |(mi, m)| {
                    (fpath!("spec.http[", ri, "].match[", mi, "]"), &m.gateways)
                })
            })
            .chain(spec.tls.iter().enumerate().flat_map(|(ri, r)| {
                r.matches
                    .iter()
                    .enumerate()
                    .map(move |(mi, m)| (fpath!("spec.tls[", ri, "].match[", mi, "]"), &m.gateways))
            }))
            .chain(spec.tcp.iter().enumerate().flat_map(|(ri, r)| {
                r.matches
                    .iter()
                    .enumerate()
                    .map(move |(mi, m)| (fpath!("spec.tcp[", ri, "].match[", mi, "]"), &m.gateways))
            }));
    for (mf, list) in match_gateways {
        for (gi, g) in list.iter().enumerate() {
            if let Some(rg) = resolve_gateway_ref(g, &vs.namespace) {
                let f = fpath!(mf, ".gateways[", gi, "]");
                gateway_ref(gateways, skipped_gateways, g, &rg, &f, cx);
            }
        }
    }
    validate::export_to(&spec.export_to, false, cx);
    let tls = compile_l4(vs, L4Kind::Tls, &hosts, cx);
    let tcp = compile_l4(vs, L4Kind::Tcp, &hosts, cx);
    let routes = compile_http(vs, resources, cx);
    VsTemplate {
        hosts,
        gateways: resolved_gateways,
        routes,
        tls,
        tcp,
    }
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
