//! Per-resource checks for Gateway, DestinationRule and ServiceEntry (what Istio rejects), one
//! file per kind. VirtualService checks live with route compilation (`routes.rs`, `matchers.rs`,
//! `actions.rs`, `resilience.rs`), which already walks every field.

mod destination_rule;
mod gateway;
mod service_entry;
pub(super) mod unsupported;

pub(super) use destination_rule::destination_rule;
pub(super) use gateway::gateway;
pub(super) use service_entry::service_entry;

use super::headers::invalid;
use super::names::is_dns_label;
use super::Ctx;
use crate::config::ErrorKind;

/// Protocols a Gateway server port may declare (case-insensitive).
pub(super) const PROTOCOLS: &[&str] = &[
    "HTTP",
    "HTTPS",
    "HTTP2",
    "GRPC",
    "GRPC-WEB",
    "TCP",
    "TLS",
    "MONGO",
    "REDIS",
    "MYSQL",
    "HTTP_PROXY",
    "UDP",
];

pub(super) fn export_to(list: &[String], service_entry: bool, cx: &mut Ctx<'_>) {
    let mut seen = std::collections::HashSet::new();
    for (i, e) in list.iter().enumerate() {
        let f = format!("spec.exportTo[{i}]");
        if !seen.insert(e.as_str()) {
            cx.error(
                &f,
                ErrorKind::Duplicate {
                    what: "exportTo entry",
                    value: e.clone(),
                    first: None,
                },
            );
        }
        match e.as_str() {
            "*" | "~" if list.len() > 1 => {
                cx.error(&f, invalid("exportTo", e, "must be the only entry"))
            }
            "~" if !service_entry => {
                cx.error(&f, invalid("exportTo", e, "only ServiceEntries may use ~"))
            }
            "*" | "." | "~" => {}
            ns if !is_dns_label(ns) => cx.error(&f, invalid("exportTo", e, "not a namespace name")),
            _ => {}
        }
    }
}
