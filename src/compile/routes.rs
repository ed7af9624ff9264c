//! VirtualService `http[]` → route templates: matchers and actions compiled and validated once
//! per VirtualService; destinations stay unresolved until a listener port is known.

use super::field::fpath;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{self, ErrorKind, HttpRoute, Resource, Resources, VirtualServiceSpec};
use crate::route::{RequestMatch, RetryPolicy, RouteOrigin};

use super::actions::{compile_direct, compile_redirect, compile_rewrite};
use super::cors::compile_cors;
use super::delegate;
use super::destination::destination;
use super::headers::{compile_headers, conflict, invalid};
use super::matchers::compile_match;
use super::resilience::{self, Resilience};
use super::templates::{
    ActionTemplate, DestinationTemplate, ForwardTemplate, MatchTemplate, RouteTemplate,
};
use super::{duration_field, Ctx};

/// Compiles every `http[]` route of a VirtualService, reporting every problem. Delegating routes
/// are replaced by the delegate's routes merged with them (`delegate.rs`).
pub(super) fn compile_http(
    vs: &Resource<VirtualServiceSpec>,
    resources: &Resources,
    cx: &mut Ctx<'_>,
) -> Vec<RouteTemplate> {
    let (namespace, vs_name) = (vs.namespace.as_str(), vs.name.as_str());
    // Sized up front here and below: a Vec grown by push keeps up to twice its length, and the
    // templates of every VirtualService are alive at once (the compile's peak).
    let mut out = Vec::with_capacity(vs.spec.http.len());
    let location: Arc<str> = vs.source.location().into();
    let resource: Arc<str> = fpath!("VirtualService ", namespace, "/", vs_name).into();
    for (i, route) in vs.spec.http.iter().enumerate() {
        let field = fpath!("spec.http[", i, "]");
        let name: Arc<str> = match &route.name {
            Some(n) => fpath!(namespace, "/", vs_name, "/", n).into(),
            None => fpath!(namespace, "/", vs_name, "/http[", i, "]").into(),
        };
        let origin = Arc::new(RouteOrigin {
            location: location.clone(),
            resource: resource.clone(),
            rule: match &route.name {
                Some(n) => fpath!(field, " (", n, ")").into(),
                None => field.clone().into(),
            },
        });
        match &route.delegate {
            Some(d) => out.extend(delegated(vs, resources, route, d, (&field, &origin), cx)),
            None => out.extend(compile_route(route, &field, name, origin, namespace, cx)),
        }
    }
    out
}

/// A root route with `delegate`: checked, then replaced by the delegate's merged routes.
fn delegated(
    root: &Resource<VirtualServiceSpec>,
    resources: &Resources,
    route: &HttpRoute,
    d: &config::Delegate,
    (field, origin): (&str, &RouteOrigin),
    cx: &mut Ctx<'_>,
) -> Vec<RouteTemplate> {
    let f = fpath!(field, ".delegate");
    let errors_before = cx.error_count();
    if root.spec.hosts.is_empty() {
        cx.error(
            &f,
            ErrorKind::Note(
                "a delegate VirtualService cannot delegate again (one level only)".into(),
            ),
        );
    }
    for (set, other) in [
        (!route.route.is_empty(), "route"),
        (route.redirect.is_some(), "redirect"),
        (route.direct_response.is_some(), "directResponse"),
    ] {
        if set {
            cx.error(field, conflict("delegate", other));
        }
    }
    if d.name.as_deref().is_none_or(str::is_empty) {
        cx.error(&fpath!(f, ".name"), ErrorKind::Missing);
    }
    for (j, m) in route.matches.iter().enumerate() {
        // Validated here, since the root's matches are only compiled merged.
        let _ = compile_match(m, &fpath!(field, ".match[", j, "]"), &root.namespace, cx);
    }
    if cx.error_count() != errors_before {
        return Vec::new();
    }
    let dvs = match delegate::find(resources, root, d) {
        Ok(dvs) => dvs,
        Err(why) => {
            cx.warn(&f, ErrorKind::Note(why));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (j, leaf) in dvs.spec.http.iter().enumerate() {
        if leaf.delegate.is_some() {
            continue; // the delegate's own error
        }
        let from = format!("delegate {}/{} spec.http[{j}]", dvs.namespace, dvs.name);
        let Some(merged) = delegate::merge(route, leaf, &root.namespace) else {
            cx.warn(
                &f,
                ErrorKind::Note(format!(
                    "{from}: its match conflicts with this route's match; dropped"
                )),
            );
            continue;
        };
        let name: Arc<str> = match &merged.name {
            Some(n) => format!("{}/{}/{n}", root.namespace, root.name).into(),
            None => format!("{}/{}/{field}/{from}", root.namespace, root.name).into(),
        };
        // The delegate was validated on its own; what can fail here is the combination.
        let mut scratch = crate::config::Report::default();
        let mut dcx = Ctx::new(&dvs.source, &mut scratch);
        let field = fpath!("spec.http[", j, "]");
        let origin = Arc::new(RouteOrigin {
            rule: format!(
                "{} → {} VirtualService {}/{} {field}",
                origin.rule,
                dvs.source.location(),
                dvs.namespace,
                dvs.name
            )
            .into(),
            ..origin.clone()
        });
        match compile_route(&merged, &field, name, origin, &dvs.namespace, &mut dcx) {
            Some(t) if scratch.is_ok() => out.push(t),
            _ => {
                for e in &scratch.errors {
                    cx.warn(
                        &f,
                        ErrorKind::Note(format!(
                            "merged with {from}: {}: {}; dropped",
                            e.field, e.kind
                        )),
                    );
                }
            }
        }
    }
    out
}

/// Compiles one `http[]` route (no delegation); `None` after any error.
fn compile_route(
    route: &HttpRoute,
    field: &str,
    name: Arc<str>,
    origin: Arc<RouteOrigin>,
    namespace: &str,
    cx: &mut Ctx<'_>,
) -> Option<RouteTemplate> {
    let mut matches = Vec::with_capacity(route.matches.len());
    for (j, m) in route.matches.iter().enumerate() {
        if let Some(mut t) = compile_match(m, &fpath!(field, ".match[", j, "]"), namespace, cx) {
            t.index = j;
            matches.push(t);
        }
    }
    let failed_matches = matches.len() != route.matches.len();
    let matches = if route.matches.is_empty() {
        vec![MatchTemplate {
            index: 0,
            matcher: RequestMatch::default(),
            port: None,
            gateways: None,
            source_labels: BTreeMap::new(),
            source_namespace: None,
        }]
    } else {
        matches
    };
    let resilience = resilience::compile(route, field, namespace, cx);
    let action = compile_action(route, field, namespace, resilience, cx)?;
    if failed_matches {
        return None;
    }
    Some(RouteTemplate {
        name,
        origin,
        matches,
        action,
    })
}

fn compile_action(
    route: &HttpRoute,
    field: &str,
    namespace: &str,
    resilience: Resilience,
    cx: &mut Ctx<'_>,
) -> Option<ActionTemplate> {
    let errors_before = cx.error_count();
    let has_route = !route.route.is_empty();
    if let Some(_r) = &route.redirect {
        for (set, other) in [
            (has_route, "route"),
            (route.fault.is_some(), "fault"),
            (route.rewrite.is_some(), "rewrite"),
            (route.direct_response.is_some(), "directResponse"),
        ] {
            if set {
                cx.error(field, conflict("redirect", other));
            }
        }
    }
    if route.direct_response.is_some() {
        for (set, other) in [
            (has_route, "route"),
            (route.fault.is_some(), "fault"),
            (route.rewrite.is_some(), "rewrite"),
        ] {
            if set {
                cx.error(field, conflict("directResponse", other));
            }
        }
    }
    if !has_route && route.redirect.is_none() && route.direct_response.is_none() {
        cx.error(
            &fpath!(field, ".route"),
            ErrorKind::Note("one of route, redirect or directResponse is required".into()),
        );
    }
    let (headers, header_host) = compile_headers(route.headers.as_deref(), field, cx);
    let rewrite = route
        .rewrite
        .as_ref()
        .and_then(|r| compile_rewrite(r, &fpath!(field, ".rewrite"), cx));
    let timeout = route
        .timeout
        .as_deref()
        .and_then(|t| duration_field(t, &fpath!(field, ".timeout"), cx));
    let cors = route
        .cors_policy
        .as_ref()
        .and_then(|c| compile_cors(c, &fpath!(field, ".corsPolicy"), cx));
    if cors.is_some() && (route.redirect.is_some() || route.direct_response.is_some()) {
        // Envoy's CORS filter only acts on routes that forward.
        cx.warn(
            &fpath!(field, ".corsPolicy"),
            ErrorKind::Note(
                "has no effect on a redirect or directResponse route (as in Envoy); ignored".into(),
            ),
        );
    }

    let action = if let Some(r) = &route.redirect {
        compile_redirect(r, route, &fpath!(field, ".redirect"), headers, cx)
            .map(ActionTemplate::Redirect)
    } else if let Some(d) = &route.direct_response {
        compile_direct(d, &fpath!(field, ".directResponse"), headers, cx)
            .map(|d| ActionTemplate::Direct(Arc::new(d)))
    } else {
        let mut destinations = Vec::with_capacity(route.route.len());
        for (i, d) in route.route.iter().enumerate() {
            let f = fpath!(field, ".route[", i, "]");
            if let Some(dt) = compile_destination(d, &f, namespace, cx) {
                destinations.push(dt);
            }
        }
        if destinations.len() > 1 {
            if destinations.iter().all(|d| d.weight == 0) {
                cx.error(&fpath!(field, ".route"), ErrorKind::ZeroWeights);
            }
            // Several destinations: weight-0 entries get no traffic.
            destinations.retain(|d| d.weight > 0);
        } else if let Some(d) = destinations.first_mut() {
            // A single destination takes all traffic whatever its weight.
            d.weight = 1;
        }
        let (rewrite_uri, rewrite_host) = match rewrite {
            Some((p, h)) => (p, h),
            None => (None, None),
        };
        if rewrite_host.is_some() && header_host.is_some() {
            cx.error(
                field,
                conflict("rewrite.authority", "headers.request.set.host"),
            );
        }
        Some(ActionTemplate::Forward(ForwardTemplate {
            destinations,
            rewrite: rewrite_uri.map(Arc::new),
            host_rewrite: rewrite_host.or(header_host).map(Box::new),
            headers: headers.shared(),
            timeout,
            retry: shared_retry(resilience.retry),
            fault: resilience.fault.map(Box::new),
            mirrors: resilience.mirrors,
            cors,
        }))
    };
    if cx.error_count() != errors_before {
        return None;
    }
    action
}

fn compile_destination(
    d: &config::HttpRouteDestination,
    field: &str,
    namespace: &str,
    cx: &mut Ctx<'_>,
) -> Option<DestinationTemplate> {
    let errors_before = cx.error_count();
    let weight = match d.weight {
        Some(w) if w < 0 => {
            cx.error(
                &fpath!(field, ".weight"),
                invalid("weight", &w.to_string(), "must be >= 0"),
            );
            0
        }
        // Istio weights are int32.
        Some(w) => w.min(i32::MAX as i64) as u32,
        None => 0,
    };
    let (headers, host_rewrite) = compile_headers(d.headers.as_deref(), field, cx);
    let dest_field = fpath!(field, ".destination");
    let Some(dest) = &d.destination else {
        cx.error(&dest_field, ErrorKind::Missing);
        return None;
    };
    let (host, subset, port) = destination(dest, &dest_field, namespace, cx)?;
    if cx.error_count() != errors_before {
        return None;
    }
    Some(DestinationTemplate {
        host,
        subset,
        port,
        weight: if d.weight.is_none() { 0 } else { weight },
        headers: headers.shared(),
        host_rewrite: host_rewrite.map(Box::new),
        field: dest_field,
    })
}

/// Most routes have Istio's default retry policy: they share one.
fn shared_retry(policy: RetryPolicy) -> Arc<RetryPolicy> {
    static DEFAULT: std::sync::LazyLock<Arc<RetryPolicy>> =
        std::sync::LazyLock::new(|| Arc::new(RetryPolicy::istio_default()));
    if policy == **DEFAULT {
        DEFAULT.clone()
    } else {
        Arc::new(policy)
    }
}
