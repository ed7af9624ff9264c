//! The human-readable form of an [`Explanation`]: one fact per line, `key: value`.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Explanation, ForwardInfo, Outcome};

/// The human-readable form: one fact per line, `key: value`, routes indented.
pub fn render_text(ex: &Explanation) -> String {
    let mut out = String::new();
    let r = &ex.request;
    let _ = write!(
        out,
        "request: {} {}{}",
        r.method,
        r.authority
            .as_deref()
            .map(|a| format!("{}://{a}", if r.https { "https" } else { "http" }))
            .unwrap_or_default(),
        r.path
    );
    if let Some(q) = &r.query {
        let _ = write!(out, "?{q}");
    }
    out.push('\n');
    for h in &r.headers {
        let _ = writeln!(out, "  header {h}");
    }
    if let Some(p) = &r.normalized_path {
        if *p != r.path {
            let _ = writeln!(out, "normalized path: {p}");
        }
    }
    let ports = ex
        .listener_ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    match ex.listener {
        Some(p) => {
            let _ = writeln!(out, "listener: Gateway port {p}");
        }
        None => {
            if let Outcome::NoListener { port } = ex.outcome {
                let _ = writeln!(
                    out,
                    "listener: none for Gateway port {port} (ports served: {ports}; the URL's port is the Gateway port)"
                );
            }
        }
    }
    if let Some(c) = &ex.filter_chain {
        let _ = writeln!(out, "filter chain: {c} (by SNI)");
    }
    if let Some(vh) = &ex.virtual_host {
        let how = match vh.matched_by {
            "exact" => "exact host",
            "wildcard" => "wildcard suffix",
            _ => "catch-all *",
        };
        let _ = writeln!(out, "virtual host: {} ({how})", vh.name);
    }
    if !ex.routes.is_empty() {
        out.push_str("routes tried:\n");
    }
    for (i, t) in ex.routes.iter().enumerate() {
        let verdict = match &t.reason {
            None => "MATCH".to_owned(),
            Some(why) => format!("no: {why}"),
        };
        let _ = writeln!(
            out,
            "  {i}. {} {} match[{}]: {verdict}",
            t.route.resource, t.route.rule, t.route.match_index
        );
    }
    if let Some(c) = &ex.chosen {
        let _ = writeln!(
            out,
            "chosen: {} {} {} match[{}]",
            c.location, c.resource, c.rule, c.match_index
        );
    }
    match &ex.outcome {
        Outcome::NoListener { .. } => {
            out.push_str("result: connection refused (no listener)\n");
        }
        Outcome::Rejected {
            status,
            flag,
            reason,
        } => {
            let _ = writeln!(out, "result: {status} {flag}: {reason} (before routing)");
        }
        Outcome::NoRoute {
            status,
            flag,
            reason,
        } => {
            let _ = writeln!(out, "result: {status} {flag}: {reason}");
        }
        Outcome::NoFilterChain { reason } => {
            let _ = writeln!(out, "result: no response: {reason}");
        }
        Outcome::TcpTunnel { filter_chain } => {
            let _ = writeln!(
                out,
                "result: TCP tunnel: {filter_chain} is a TLS-terminated TCP server, its tcp route takes the decrypted stream"
            );
        }
        Outcome::HttpsRedirect { status, location } => {
            let _ = writeln!(
                out,
                "result: {status} https redirect (tls.httpsRedirect), location: {location}"
            );
        }
        Outcome::Redirect { status, location } => {
            let _ = writeln!(out, "result: redirect {status}, location: {location}");
        }
        Outcome::DirectResponse { status, body_bytes } => {
            let _ = writeln!(
                out,
                "result: direct response {status} ({body_bytes} byte body)"
            );
        }
        Outcome::Forward(f) => render_forward(&mut out, f),
    }
    out
}

fn render_forward(out: &mut String, f: &ForwardInfo) {
    out.push_str("result: forward\n");
    for d in &f.destinations {
        let _ = write!(
            out,
            "  destination {} weight {} ({:.1}%)",
            d.cluster, d.weight, d.percent
        );
        if let Some(lb) = &d.lb {
            let _ = write!(out, ", lb {lb}");
        }
        if d.outlier_detection {
            out.push_str(", outlier detection");
        }
        out.push('\n');
        for e in &d.endpoints {
            let _ = write!(out, "    endpoint {} weight {}", e.address, e.weight);
            if let Some(h) = e.health {
                let _ = write!(out, " {h}");
            }
            out.push('\n');
        }
        if let Some(n) = &d.note {
            let _ = writeln!(out, "    {n}");
        }
    }
    let p = &f.policy;
    let ms = |v: Option<u64>| {
        v.map(|m| format!("{:?}", Duration::from_millis(m)))
            .unwrap_or_else(|| "none".into())
    };
    let _ = writeln!(out, "  timeout: {}", ms(p.timeout_ms));
    let _ = write!(out, "  retries: {}", p.retries.attempts);
    if p.retries.attempts > 0 {
        let _ = write!(out, " on {}", p.retries.retry_on.join(","));
        if !p.retries.retriable_status_codes.is_empty() {
            let codes: Vec<String> = p
                .retries
                .retriable_status_codes
                .iter()
                .map(u16::to_string)
                .collect();
            let _ = write!(out, " (status {})", codes.join(","));
        }
        let _ = write!(
            out,
            ", per try timeout {}",
            ms(p.retries.per_try_timeout_ms)
        );
    }
    out.push('\n');
    if let Some(r) = &p.rewrite {
        let _ = writeln!(out, "  rewrite: {r}");
    }
    if let Some(a) = &p.authority_rewrite {
        let _ = writeln!(out, "  authority rewrite: {a}");
    }
    let _ = writeln!(out, "  cors: {}", if p.cors { "yes" } else { "no" });
    let _ = writeln!(out, "  fault: {}", p.fault.as_deref().unwrap_or("none"));
    let mirrors = if p.mirrors.is_empty() {
        "none".to_owned()
    } else {
        p.mirrors.join(", ")
    };
    let _ = writeln!(out, "  mirrors: {mirrors}");
}
