//! ServiceEntry: hosts, ports, resolution and endpoints.

use std::collections::HashMap;

use crate::config::{self, ConflictKind, ErrorKind, Resource};

use super::{export_to, PROTOCOLS};
use crate::compile::headers::invalid;
use crate::compile::names::host_error;
use crate::compile::Ctx;

pub(in crate::compile) fn service_entry(se: &Resource<config::ServiceEntrySpec>, cx: &mut Ctx<'_>) {
    let spec = &se.spec;
    if spec.hosts.is_empty() {
        cx.error(
            "spec.hosts",
            ErrorKind::Note("a ServiceEntry must have at least one host".into()),
        );
    }
    for (i, h) in spec.hosts.iter().enumerate() {
        if h == "*" {
            cx.error(
                &format!("spec.hosts[{i}]"),
                invalid("host", h, "`*` is not allowed"),
            );
        } else if let Some(why) = host_error(h) {
            cx.error(&format!("spec.hosts[{i}]"), invalid("host", h, why));
        }
    }
    export_to(&spec.export_to, true, cx);
    let resolution = spec.resolution.as_deref().unwrap_or("NONE");
    if !matches!(
        resolution,
        "NONE" | "STATIC" | "DNS" | "DNS_ROUND_ROBIN" | "DYNAMIC_DNS"
    ) {
        cx.error(
            "spec.resolution",
            invalid(
                "resolution",
                resolution,
                "use NONE, STATIC, DNS or DNS_ROUND_ROBIN",
            ),
        );
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut numbers: HashMap<i64, usize> = HashMap::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        match p.number {
            None => cx.error(&format!("{f}.number"), ErrorKind::Missing),
            Some(n) if !(1..=65535).contains(&n) => cx.error(
                &format!("{f}.number"),
                ErrorKind::OutOfRange {
                    value: n,
                    min: 1,
                    max: 65535,
                },
            ),
            Some(n) => {
                if let Some(first) = numbers.insert(n, i) {
                    cx.error(
                        &format!("{f}.number"),
                        ErrorKind::Duplicate {
                            what: "port number",
                            value: n.to_string(),
                            first: Some(format!("spec.ports[{first}]")),
                        },
                    );
                }
            }
        }
        if let Some(n) = p.name.as_deref() {
            if let Some(first) = names.insert(n, i) {
                cx.error(
                    &format!("{f}.name"),
                    ErrorKind::Duplicate {
                        what: "port name",
                        value: n.into(),
                        first: Some(format!("spec.ports[{first}]")),
                    },
                );
            }
        }
        if let Some(proto) = &p.protocol {
            if !PROTOCOLS.contains(&proto.to_ascii_uppercase().as_str()) {
                cx.error(
                    &format!("{f}.protocol"),
                    invalid("protocol", proto, "unknown protocol"),
                );
            }
        }
        if let Some(t) = p.target_port {
            if !(1..=65535).contains(&t) {
                cx.error(
                    &format!("{f}.targetPort"),
                    ErrorKind::OutOfRange {
                        value: t,
                        min: 1,
                        max: 65535,
                    },
                );
            }
        }
    }
    if resolution == "NONE" && !spec.endpoints.is_empty() {
        cx.error(
            "spec.endpoints",
            ErrorKind::Note("endpoints cannot be used with resolution NONE".into()),
        );
    }
    if resolution == "DNS_ROUND_ROBIN" && spec.endpoints.len() > 1 {
        cx.error(
            "spec.endpoints",
            ErrorKind::Note("DNS_ROUND_ROBIN allows at most one endpoint".into()),
        );
    }
    if resolution == "DNS" && spec.endpoints.is_empty() {
        for (i, h) in spec.hosts.iter().enumerate() {
            if h.starts_with('*') {
                cx.error(&format!("spec.hosts[{i}]"), invalid("host", h, "a DNS ServiceEntry without endpoints resolves its hosts, so they cannot be wildcards"));
            }
        }
    }
    if spec.workload_selector.is_some() && !spec.endpoints.is_empty() {
        cx.error(
            "spec.workloadSelector",
            ErrorKind::Conflict(ConflictKind {
                a: "workloadSelector",
                b: "endpoints",
            }),
        );
    }
    for (i, ep) in spec.endpoints.iter().enumerate() {
        let f = format!("spec.endpoints[{i}]");
        match ep.address.as_deref() {
            None | Some("") => cx.error(&format!("{f}.address"), ErrorKind::Missing),
            Some(a) if a.starts_with("unix://") => cx.error(
                &format!("{f}.address"),
                ErrorKind::NotYetSupported {
                    what: "unix socket endpoints".into(),
                    ignored: false,
                },
            ),
            Some(a) => {
                let is_ip = a.parse::<std::net::IpAddr>().is_ok();
                if resolution == "STATIC" && !is_ip {
                    cx.error(
                        &format!("{f}.address"),
                        invalid("address", a, "STATIC resolution needs an IP address"),
                    );
                } else if !is_ip {
                    if let Some(why) = host_error(a) {
                        cx.error(&format!("{f}.address"), invalid("address", a, why));
                    }
                }
            }
        }
        for (name, port) in &ep.ports {
            if !names.contains_key(name.as_str()) {
                cx.error(
                    &format!("{f}.ports.{name}"),
                    invalid("port name", name, "not declared in spec.ports"),
                );
            }
            if !(1..=65535).contains(port) {
                cx.error(
                    &format!("{f}.ports.{name}"),
                    ErrorKind::OutOfRange {
                        value: *port,
                        min: 1,
                        max: 65535,
                    },
                );
            }
        }
        if let Some(w) = ep.weight {
            if w < 0 {
                cx.error(
                    &format!("{f}.weight"),
                    invalid("weight", &w.to_string(), "must not be negative"),
                );
            }
        }
    }
}
