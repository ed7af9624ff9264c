//! VirtualService `retries`, `fault`, `mirror`/`mirrors` → route policies, validated and compiled
//! with Istio's translation (§5.7–5.9). Mirror destinations stay unresolved until a listener port
//! is known, like route destinations. May not touch: clusters, sockets.

use super::field::fpath;
use http::StatusCode;

use crate::config::{self, ErrorKind, HttpRoute};
use crate::route::{
    per_million, AbortKind, FaultAbort, FaultDelay, FaultPolicy, HeaderOps, RetryOn, RetryPolicy,
};

use super::destination::destination;
use super::headers::invalid;
use super::templates::{DestinationTemplate, MirrorTemplate};
use super::{duration_field, Ctx};

/// The resilience parts of one `http[]` route.
#[derive(Debug)]
pub(super) struct Resilience {
    pub retry: RetryPolicy,
    pub fault: Option<FaultPolicy>,
    pub mirrors: Vec<MirrorTemplate>,
}

/// Compiles and validates `retries`, `fault` and the mirrors of a route.
pub(super) fn compile(
    route: &HttpRoute,
    field: &str,
    namespace: &str,
    cx: &mut Ctx<'_>,
) -> Resilience {
    Resilience {
        retry: retries(route.retries.as_deref(), field, cx),
        fault: route
            .fault
            .as_ref()
            .and_then(|f| fault(f, &fpath!(field, ".fault"), cx)),
        mirrors: mirrors(route, field, namespace, cx),
    }
}

/// Istio's `ConvertPolicy`: no block ⇒ the default policy; `attempts <= 0` ⇒ no retries.
/// `parent`: the route's field path.
fn retries(r: Option<&config::HttpRetry>, parent: &str, cx: &mut Ctx<'_>) -> RetryPolicy {
    let Some(r) = r else {
        return RetryPolicy::istio_default();
    };
    // Formatted only when set: most routes have no `retries`.
    let f = &fpath!(parent, ".retries");
    let attempts = r.attempts.unwrap_or(0);
    if attempts < 0 {
        cx.error(
            &fpath!(f, ".attempts"),
            invalid("attempts", &attempts.to_string(), "must be >= 0"),
        );
    }
    if attempts == 0
        && (r.per_try_timeout.is_some() || r.retry_on.is_some())
        && r.attempts.is_some()
    {
        cx.error(
            f,
            ErrorKind::Note("perTryTimeout and retryOn need attempts > 0".into()),
        );
    }
    let per_try_timeout = r
        .per_try_timeout
        .as_deref()
        .and_then(|t| duration_field(t, &fpath!(f, ".perTryTimeout"), cx));
    let backoff = r
        .backoff
        .as_deref()
        .and_then(|t| duration_field(t, &fpath!(f, ".backoff"), cx));
    let mut on = RetryOn::default();
    let mut status_codes = Vec::new();
    if let Some(list) = &r.retry_on {
        for token in list.split(',') {
            // Istio does not trim spaces around tokens.
            if let Some(c) = token.parse::<u16>().ok().filter(|c| {
                *c >= 100 && StatusCode::from_u16(*c).is_ok_and(|s| s.canonical_reason().is_some())
            }) {
                status_codes.push(c);
                on |= RetryOn::RETRIABLE_STATUS_CODES;
            } else if let Some(cond) = RetryOn::from_token(token) {
                on |= cond;
            } else if token
                .parse::<u16>()
                .is_ok_and(|c| c >= 100 && StatusCode::from_u16(c).is_ok())
            {
                // A code Go's net/http does not know: Envoy gets it as an (unknown) condition.
                cx.warn(
                    &fpath!(f, ".retryOn"),
                    ErrorKind::Note(format!(
                        "status {token} is not a known HTTP status; it is ignored"
                    )),
                );
            } else {
                cx.error(
                    &fpath!(f, ".retryOn"),
                    invalid(
                        "retryOn condition",
                        token,
                        "not a status code nor a known condition",
                    ),
                );
            }
        }
    }
    if attempts <= 0 {
        return RetryPolicy::disabled();
    }
    let defaults = RetryPolicy::istio_default();
    RetryPolicy {
        num_retries: attempts.min(i64::from(u32::MAX)) as u32,
        on: if r.retry_on.as_deref().unwrap_or("").is_empty() {
            RetryOn::ISTIO_DEFAULT
        } else {
            on
        },
        status_codes,
        per_try_timeout,
        backoff_base: backoff.unwrap_or(defaults.backoff_base),
        backoff_max: backoff.map_or(defaults.backoff_max, |b| b * 10),
        other_hosts: r.retry_ignore_previous_hosts.unwrap_or(true),
    }
}

fn fault(fault: &config::HttpFaultInjection, f: &str, cx: &mut Ctx<'_>) -> Option<FaultPolicy> {
    if fault.delay.is_none() && fault.abort.is_none() {
        cx.error(
            f,
            ErrorKind::Note("one of delay or abort is required".into()),
        );
    }
    let delay = fault.delay.as_ref().and_then(|d| {
        if d.exponential_delay.is_some() {
            cx.error(
                &fpath!(f, ".delay.exponentialDelay"),
                ErrorKind::Unsupported {
                    what: "exponentialDelay".into(),
                    why: "Istio rejects it",
                },
            );
        }
        let duration = match &d.fixed_delay {
            Some(t) => duration_field(t, &fpath!(f, ".delay.fixedDelay"), cx),
            None if d.exponential_delay.is_none() => {
                cx.error(&fpath!(f, ".delay.fixedDelay"), ErrorKind::Missing);
                None
            }
            None => None,
        };
        let pm = percentage(d.percentage.as_ref(), &fpath!(f, ".delay.percentage"), cx)
            .or_else(|| d.percent.map(|p| per_million(p as f64)))
            .unwrap_or(0);
        Some(FaultDelay {
            duration: duration?,
            per_million: pm,
        })
    });
    let abort = fault.abort.as_ref().and_then(|a| {
        if a.http2_error.is_some() {
            cx.error(
                &fpath!(f, ".abort.http2Error"),
                ErrorKind::Unsupported {
                    what: "http2Error".into(),
                    why: "Istio rejects it",
                },
            );
        }
        let kind = match (a.http_status, a.grpc_status.as_deref()) {
            (Some(s), _) if !(200..=600).contains(&s) => {
                cx.error(
                    &fpath!(f, ".abort.httpStatus"),
                    ErrorKind::OutOfRange {
                        value: s,
                        min: 200,
                        max: 599,
                    },
                );
                None
            }
            (Some(_), Some(_)) => {
                cx.error(
                    &fpath!(f, ".abort"),
                    ErrorKind::Conflict(config::ConflictKind {
                        a: "httpStatus",
                        b: "grpcStatus",
                    }),
                );
                None
            }
            (Some(s), None) => StatusCode::from_u16(s as u16).ok().map(AbortKind::Http),
            (None, Some(g)) => match grpc_code(g) {
                Some(c) => Some(AbortKind::Grpc(c)),
                None => {
                    cx.error(
                        &fpath!(f, ".abort.grpcStatus"),
                        invalid("gRPC status", g, "use a code name such as UNAVAILABLE"),
                    );
                    None
                }
            },
            (None, None) => {
                if a.http2_error.is_none() {
                    cx.error(
                        &fpath!(f, ".abort"),
                        ErrorKind::Note("one of httpStatus or grpcStatus is required".into()),
                    );
                }
                None
            }
        };
        let pm =
            percentage(a.percentage.as_ref(), &fpath!(f, ".abort.percentage"), cx).unwrap_or(0);
        Some(FaultAbort {
            kind: kind?,
            per_million: pm,
        })
    });
    (delay.is_some() || abort.is_some()).then_some(FaultPolicy { delay, abort })
}

/// A fault percentage: 0 or within 0.0001–100, in parts per million.
fn percentage(p: Option<&config::Percent>, field: &str, cx: &mut Ctx<'_>) -> Option<u32> {
    let p = p?;
    if p.value != 0.0 && !(0.0001..=100.0).contains(&p.value) {
        cx.error(
            &fpath!(field, ".value"),
            invalid(
                "percentage",
                &p.value.to_string(),
                "must be 0 or within 0.0001-100",
            ),
        );
        return None;
    }
    Some(per_million(p.value))
}

/// A gRPC status name (`UNAVAILABLE`) or number.
fn grpc_code(name: &str) -> Option<u32> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32)
        .or_else(|| name.parse().ok().filter(|c| *c < 17))
}

fn mirrors(
    route: &HttpRoute,
    field: &str,
    namespace: &str,
    cx: &mut Ctx<'_>,
) -> Vec<MirrorTemplate> {
    if route.mirror.is_some() && !route.mirrors.is_empty() {
        cx.error(
            field,
            config::ErrorKind::Conflict(config::ConflictKind {
                a: "mirror",
                b: "mirrors",
            }),
        );
    }
    let mirror_pct = |p: Option<&config::Percent>, f: String, cx: &mut Ctx<'_>| match p {
        None => None,
        Some(p) if !(0.0..=100.0).contains(&p.value) => {
            cx.error(
                &f,
                invalid("percentage", &p.value.to_string(), "must be within 0-100"),
            );
            None
        }
        Some(p) => Some(per_million(p.value)),
    };
    let mut out = Vec::new();
    let mut push = |d: &config::Destination, f: String, pm: u32, cx: &mut Ctx<'_>| {
        if let Some((host, subset, port)) = destination(d, &f, namespace, cx) {
            out.push(MirrorTemplate {
                destination: DestinationTemplate {
                    host,
                    subset,
                    port,
                    weight: 0,
                    headers: HeaderOps::none(),
                    host_rewrite: None,
                    field: f,
                },
                per_million: pm,
            });
        }
    };
    let pct = route
        .mirror_percentage
        .as_ref()
        .and_then(|p| mirror_pct(Some(p), fpath!(field, ".mirrorPercentage.value"), cx))
        .or_else(|| route.mirror_percent.map(|p| per_million(p as f64)));
    if let Some(m) = &route.mirror {
        push(m, fpath!(field, ".mirror"), pct.unwrap_or(1_000_000), cx);
    }
    for (i, m) in route.mirrors.iter().enumerate() {
        let f = fpath!(field, ".mirrors[", i, "]");
        let pm = mirror_pct(m.percentage.as_ref(), fpath!(f, ".percentage.value"), cx);
        match &m.destination {
            Some(d) => push(d, fpath!(f, ".destination"), pm.unwrap_or(1_000_000), cx),
            None => cx.error(&fpath!(f, ".destination"), ErrorKind::Missing),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::compile::{compile, Options};
    use crate::config::load_str;
    use crate::route::{
        AbortKind, FaultPolicy, Forward, Mirror, RetryOn, RetryPolicy, RouteAction,
    };

    const HEAD: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: shop}\nspec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: m, namespace: shop}\nspec:\n  hosts: [m.shop.svc.cluster.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1}]\n---\n";

    /// Compiles one route (`extras` are fields of the http[0] entry) and returns its action.
    fn forward(extras: &str) -> Result<(RetryPolicy, Option<FaultPolicy>, Vec<Mirror>), String> {
        let yaml = format!("{HEAD}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs, namespace: shop}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: m}}}}]\n{extras}");
        let (resources, report) = load_str(&yaml, "t.yaml", "default");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let (compiled, report) = compile(&resources, &Options::default());
        let Some(compiled) = compiled else {
            return Err(report
                .errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"));
        };
        let route = &compiled.listeners[0].table.vhosts[0].routes[0];
        match &*route.action {
            RouteAction::Forward(Forward {
                retry,
                fault,
                mirrors,
                ..
            }) => Ok((
                (**retry).clone(),
                fault.as_deref().cloned(),
                mirrors.clone(),
            )),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retries_translate_as_istio() {
        assert_eq!(forward("").unwrap().0, RetryPolicy::istio_default());
        assert_eq!(
            forward("    retries: {attempts: 0}\n")
                .unwrap()
                .0
                .num_retries,
            0
        );
        let r = forward("    retries: {attempts: 4}\n").unwrap().0;
        assert_eq!((r.num_retries, r.on), (4, RetryOn::ISTIO_DEFAULT));
        let r = forward("    retries: {attempts: 3, retryOn: \"5xx,503,connect-failure\", perTryTimeout: 2s, backoff: 100ms, retryIgnorePreviousHosts: false}\n").unwrap().0;
        assert_eq!(
            r,
            RetryPolicy {
                num_retries: 3,
                on: RetryOn::FIVE_XX | RetryOn::CONNECT_FAILURE | RetryOn::RETRIABLE_STATUS_CODES,
                status_codes: vec![503],
                per_try_timeout: Some(Duration::from_secs(2)),
                backoff_base: Duration::from_millis(100),
                backoff_max: Duration::from_secs(1),
                other_hosts: false,
            }
        );
        let e = forward("    retries: {attempts: 2, retryOn: \"5xx, reset\"}\n").unwrap_err();
        assert!(e.contains("retryOn condition \" reset\""), "{e}");
    }

    #[test]
    fn faults_compile_to_parts_per_million() {
        let f = forward("    fault: {delay: {fixedDelay: 1s, percentage: {value: 12.5}}, abort: {grpcStatus: UNAVAILABLE}}\n")
            .unwrap()
            .1
            .unwrap();
        let d = f.delay.unwrap();
        assert_eq!(
            (d.duration, d.per_million),
            (Duration::from_secs(1), 125_000)
        );
        let a = f.abort.unwrap();
        assert_eq!(
            (a.kind, a.per_million),
            (AbortKind::Grpc(14), 0),
            "no percentage: never"
        );
        let f = forward("    fault: {delay: {fixedDelay: 5ms, percent: 30}}\n")
            .unwrap()
            .1
            .unwrap();
        assert_eq!(f.delay.unwrap().per_million, 300_000);
        let e = forward("    fault: {abort: {grpcStatus: SOMETIMES}}\n").unwrap_err();
        assert!(e.contains("grpcStatus"), "{e}");
        let e = forward("    fault: {abort: {percentage: {value: 10}}}\n").unwrap_err();
        assert!(e.contains("one of httpStatus or grpcStatus"), "{e}");
    }

    #[test]
    fn mirrors_resolve_like_destinations() {
        let m = forward("    mirror: {host: m}\n    mirrorPercentage: {value: 40}\n")
            .unwrap()
            .2;
        assert_eq!(m.len(), 1);
        assert!(
            m[0].cluster.is_some(),
            "short name resolved in the VirtualService's namespace"
        );
        assert_eq!(&*m[0].key, "outbound|80||m.shop.svc.cluster.local");
        assert_eq!(m[0].per_million, 400_000);
        let m = forward("    mirrors:\n    - {destination: {host: m}}\n    - {destination: {host: nowhere.invalid}, percentage: {value: 5}}\n")
            .unwrap()
            .2;
        assert_eq!(m[0].per_million, 1_000_000, "no percentage: all");
        assert_eq!(m[1].per_million, 50_000);
        let e = forward("    mirror: {host: m}\n    mirrors: [{destination: {host: m}}]\n")
            .unwrap_err();
        assert!(e.contains("mirror"), "{e}");
    }

    #[test]
    fn mirror_percent_is_the_deprecated_integer_share() {
        let m = forward("    mirror: {host: m}\n    mirrorPercent: 30\n")
            .unwrap()
            .2;
        assert_eq!(m[0].per_million, 300_000);
    }
}
