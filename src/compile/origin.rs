//! DestinationRule `tls` (`ClientTLSSettings`) → the plain `upstream::OriginTls` a cluster
//! carries: which files, which SNI, which names the server certificate must carry.
//! May not touch: files (the cluster reads them when it is built), rustls.

use crate::config::{self, Resource};
use crate::upstream::{CaFile, ClientCert, OriginTls};

/// The TLS a cluster to `host` originates under `tls` (found at `field` of `rule`); `None` for
/// plain text (`DISABLE`, unset, and `ISTIO_MUTUAL`, which validation already warned about).
///
/// SNI is `sni`, else the destination host (Istio's auto SNI uses the request's host after
/// rewrites; meshgate pools connections per endpoint, so it uses the host the route names,
/// which is the same for the usual egress ServiceEntry). Without `sni` and `subjectAltNames`
/// the certificate must be valid for that host (auto SAN validation).
pub(super) fn origin_tls(
    tls: &config::ClientTlsSettings,
    field: &str,
    rule: Option<&Resource<config::DestinationRuleSpec>>,
    host: &str,
    service_sans: &[String],
) -> Option<OriginTls> {
    let mode = tls.mode.as_deref()?;
    if !matches!(mode, "SIMPLE" | "MUTUAL") {
        return None;
    }
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let credential = nonempty(&tls.credential_name);
    let client_cert = match (&credential, mode) {
        (_, "SIMPLE") => None,
        (Some(name), _) => Some(ClientCert::Credential(name.clone())),
        (None, _) => Some(ClientCert::Files {
            cert: nonempty(&tls.client_certificate)?,
            key: nonempty(&tls.private_key)?,
        }),
    };
    let ca = match &credential {
        Some(name) => Some(CaFile::Credential(name.clone())),
        None => nonempty(&tls.ca_certificates).map(CaFile::File),
    };
    let sni = nonempty(&tls.sni);
    let subject_alt_names = if tls.subject_alt_names.is_empty() {
        service_sans.to_vec()
    } else {
        tls.subject_alt_names.clone()
    };
    let origin = match rule {
        Some(r) => format!("{}: {field}", r.source),
        None => field.to_owned(),
    };
    Some(OriginTls {
        origin,
        client_cert,
        ca,
        explicit_sni: sni.is_some(),
        server_name: Some(sni.unwrap_or_else(|| host.to_owned())),
        subject_alt_names,
        insecure_skip_verify: tls.insecure_skip_verify.unwrap_or(false),
        alpn_h2: false,
    })
}
