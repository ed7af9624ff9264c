//! Gateway: servers, ports, hosts, bind and TLS settings.

use std::collections::HashMap;

use crate::config::{self, ErrorKind, Resource};

use super::PROTOCOLS;
use crate::compile::headers::invalid;
use crate::compile::names::{host_error, is_dns_label};
use crate::compile::Ctx;

pub(in crate::compile) fn gateway(gw: &Resource<config::GatewaySpec>, cx: &mut Ctx<'_>) {
    if !is_dns_label(&gw.name) {
        cx.error(
            "metadata.name",
            invalid(
                "gateway name",
                &gw.name,
                "must be a DNS-1123 label (no dots)",
            ),
        );
    }
    if gw.spec.servers.is_empty() {
        cx.error(
            "spec.servers",
            ErrorKind::Note("a Gateway must have at least one server".into()),
        );
    }
    let mut port_names: HashMap<&str, usize> = HashMap::new();
    for (i, s) in gw.spec.servers.iter().enumerate() {
        let f = format!("spec.servers[{i}]");
        match &s.port {
            None => cx.error(&format!("{f}.port"), ErrorKind::Missing),
            Some(p) => {
                match p.number {
                    None => cx.error(&format!("{f}.port.number"), ErrorKind::Missing),
                    Some(n) if !(1..=65535).contains(&n) => cx.error(
                        &format!("{f}.port.number"),
                        ErrorKind::OutOfRange {
                            value: n,
                            min: 1,
                            max: 65535,
                        },
                    ),
                    Some(_) => {}
                }
                match &p.protocol {
                    None => cx.error(&format!("{f}.port.protocol"), ErrorKind::Missing),
                    Some(proto) if !PROTOCOLS.contains(&proto.to_ascii_uppercase().as_str()) => cx.error(
                        &format!("{f}.port.protocol"),
                        invalid("protocol", proto, "use HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, REDIS or MYSQL"),
                    ),
                    Some(_) => {}
                }
                match p.name.as_deref() {
                    None | Some("") => cx.error(&format!("{f}.port.name"), ErrorKind::Missing),
                    Some(n) => {
                        if let Some(first) = port_names.insert(n, i) {
                            cx.error(
                                &format!("{f}.port.name"),
                                ErrorKind::Duplicate {
                                    what: "port name",
                                    value: n.into(),
                                    first: Some(format!("spec.servers[{first}]")),
                                },
                            );
                        }
                    }
                }
                if p.target_port.is_some() {
                    cx.error(
                        &format!("{f}.port.targetPort"),
                        ErrorKind::Note("targetPort is not allowed on a Gateway".into()),
                    );
                }
            }
        }
        if s.hosts.is_empty() {
            cx.error(
                &format!("{f}.hosts"),
                ErrorKind::Note("a server must have at least one host".into()),
            );
        }
        for (j, h) in s.hosts.iter().enumerate() {
            if let Some(why) = server_host_error(h) {
                cx.error(&format!("{f}.hosts[{j}]"), invalid("host", h, why));
            }
        }
        if let Some(b) = &s.bind {
            let ok = b.parse::<std::net::IpAddr>().is_ok() || b.starts_with("unix://");
            if !ok {
                cx.error(
                    &format!("{f}.bind"),
                    invalid("bind", b, "must be an IP address or unix://path"),
                );
            }
        }
        let proto = s
            .port
            .as_ref()
            .and_then(|p| p.protocol.as_deref())
            .unwrap_or("")
            .to_ascii_uppercase();
        let tls_port = proto == "HTTPS" || proto == "TLS";
        match &s.tls {
            None if tls_port => cx.error(
                &format!("{f}.tls"),
                ErrorKind::Note(format!("a {proto} server needs a tls block")),
            ),
            Some(t) if !tls_port => {
                let redirect_only = t.server_certificate.is_none()
                    && t.credential_name.is_none()
                    && t.mode.as_deref().unwrap_or("PASSTHROUGH") == "PASSTHROUGH";
                if !redirect_only
                    || !matches!(proto.as_str(), "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB")
                {
                    cx.error(
                        &format!("{f}.tls"),
                        ErrorKind::Note(format!(
                            "tls settings are not allowed on a {proto} server (only httpsRedirect)"
                        )),
                    );
                }
            }
            Some(t) => {
                server_tls(t, &format!("{f}.tls"), cx);
                // ISTIO_MUTUAL terminates only with --mesh-certs-dir; its version and suite
                // fields are checked either way.
                let terminating = crate::compile::tls::terminates(t, None)
                    || crate::compile::tls::mode(t) == "ISTIO_MUTUAL";
                if terminating {
                    crate::compile::tls::check(t, &format!("{f}.tls"), cx);
                }
            }
            None => {}
        }
    }
}

fn server_host_error(h: &str) -> Option<&'static str> {
    let (ns, host) = match h.split_once('/') {
        Some((ns, host)) => (Some(ns), host),
        None => (None, h),
    };
    if let Some(ns) = ns {
        if ns != "*" && ns != "." && !is_dns_label(ns) {
            return Some("the namespace part must be `*`, `.` or a namespace name");
        }
    }
    if host.is_empty() {
        return Some("empty host");
    }
    if host != "*" && !host.contains('.') && host.parse::<std::net::IpAddr>().is_err() {
        return Some("short names are not allowed in Gateway hosts; use a fully qualified name");
    }
    host_error(host)
}

fn server_tls(t: &config::ServerTlsSettings, f: &str, cx: &mut Ctx<'_>) {
    let mode = t
        .mode
        .as_deref()
        .unwrap_or("PASSTHROUGH")
        .to_ascii_uppercase();
    if !matches!(
        mode.as_str(),
        "PASSTHROUGH"
            | "SIMPLE"
            | "MUTUAL"
            | "AUTO_PASSTHROUGH"
            | "ISTIO_MUTUAL"
            | "OPTIONAL_MUTUAL"
    ) {
        cx.error(
            &format!("{f}.mode"),
            invalid("TLS mode", &mode, "unknown mode"),
        );
        return;
    }
    let sources = [
        t.server_certificate.is_some() || t.private_key.is_some(),
        t.credential_name.is_some(),
        !t.credential_names.is_empty(),
        !t.tls_certificates.is_empty(),
    ];
    if sources.iter().filter(|b| **b).count() > 1 {
        cx.error(f, ErrorKind::Note("only one of serverCertificate/privateKey, credentialName, credentialNames, tlsCertificates may be set".into()));
    }
    let has_credential = t.credential_name.is_some()
        || !t.credential_names.is_empty()
        || !t.tls_certificates.is_empty();
    if matches!(mode.as_str(), "SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL") && !has_credential {
        if t.server_certificate.is_none() {
            cx.error(&format!("{f}.serverCertificate"), ErrorKind::Missing);
        }
        if t.private_key.is_none() {
            cx.error(&format!("{f}.privateKey"), ErrorKind::Missing);
        }
        if mode != "SIMPLE" && t.ca_certificates.is_none() {
            cx.error(&format!("{f}.caCertificates"), ErrorKind::Missing);
        }
    }
    if mode == "ISTIO_MUTUAL" && (sources.iter().any(|b| *b) || t.ca_certificates.is_some()) {
        cx.error(
            f,
            ErrorKind::Note(
                "ISTIO_MUTUAL cannot have certificates, keys, CAs or credentials".into(),
            ),
        );
    }
}
