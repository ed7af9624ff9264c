//! DestinationRule `tls` (`ClientTLSSettings`) → the plain `upstream::OriginTls` a cluster
//! carries: which files, which SNI, which names the server certificate must carry.
//! May not touch: files (the cluster reads them when it is built), rustls.

use std::path::Path;

use crate::config::{self, Resource};
use crate::upstream::{CaFile, ClientCert, OriginTls};

/// Istio's file-mounted workload certificate (`/etc/certs` in a sidecar): the gateway's mesh
/// identity, for ISTIO_MUTUAL to upstreams and on Gateway servers.
pub(super) struct MeshFiles {
    /// `cert-chain.pem`
    pub cert: String,
    /// `key.pem`
    pub key: String,
    /// `root-cert.pem`, the mesh's CA.
    pub root: String,
}

impl MeshFiles {
    pub(super) fn in_dir(dir: &Path) -> MeshFiles {
        let file = |name: &str| dir.join(name).display().to_string();
        MeshFiles {
            cert: file("cert-chain.pem"),
            key: file("key.pem"),
            root: file("root-cert.pem"),
        }
    }
}

/// The cluster a DestinationRule's `tls` applies to: its host, port and subset.
pub(super) struct Destination<'a> {
    pub host: &'a str,
    pub port: u16,
    pub subset: Option<&'a str>,
    /// The ServiceEntry's `subjectAltNames`.
    pub service_sans: &'a [String],
}

/// The TLS a cluster to `to` originates under `tls` (found at `field` of `rule`); `None` for
/// plain text (`DISABLE`, unset, and `ISTIO_MUTUAL` without `mesh_certs_dir`, which validation
/// already warned about).
///
/// SIMPLE/MUTUAL: SNI is `sni`, else the destination host (Istio's auto SNI uses the request's
/// host after rewrites; meshgate pools connections per endpoint, so it uses the host the route
/// names, which is the same for the usual egress ServiceEntry). Without `sni` and
/// `subjectAltNames` the certificate must be valid for that host (auto SAN validation).
///
/// ISTIO_MUTUAL (with `mesh_certs_dir`): the workload certificate and the mesh root from that
/// folder, SNI `outbound_.<port>_.<subset>_.<host>` (Istio's cluster key) unless `sni` is set,
/// ALPN `istio` (Istio's in-mesh marker), and the server's SPIFFE identity checked against
/// `subjectAltNames` (else the ServiceEntry's); with neither, any workload the mesh root signed
/// is accepted (istiod would use the destination's service accounts, which a standalone
/// gateway does not know).
pub(super) fn origin_tls(
    tls: &config::ClientTlsSettings,
    field: &str,
    rule: Option<&Resource<config::DestinationRuleSpec>>,
    to: &Destination<'_>,
    mesh_certs_dir: Option<&Path>,
) -> Option<OriginTls> {
    let mode = tls.mode.as_deref()?;
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let sni = nonempty(&tls.sni);
    let subject_alt_names = if tls.subject_alt_names.is_empty() {
        to.service_sans.to_vec()
    } else {
        tls.subject_alt_names.clone()
    };
    let origin = match rule {
        Some(r) => format!("{}: {field}", r.source),
        None => field.to_owned(),
    };
    if mode == "ISTIO_MUTUAL" {
        let mesh = MeshFiles::in_dir(mesh_certs_dir?);
        let cluster_sni = || {
            format!(
                "outbound_.{}_.{}_.{}",
                to.port,
                to.subset.unwrap_or(""),
                to.host
            )
        };
        return Some(OriginTls {
            origin,
            client_cert: Some(ClientCert::Files {
                cert: mesh.cert,
                key: mesh.key,
            }),
            ca: Some(CaFile::File(mesh.root)),
            crl: None,
            // Workload certificates carry SPIFFE URIs, not the SNI name: no auto SAN check.
            explicit_sni: true,
            server_name: Some(sni.unwrap_or_else(cluster_sni)),
            subject_alt_names,
            insecure_skip_verify: false,
            alpn_h2: false,
            mesh: true,
        });
    }
    if !matches!(mode, "SIMPLE" | "MUTUAL") {
        return None;
    }
    let credential = nonempty(&tls.credential_name);
    let client_cert = match (&credential, mode) {
        (_, "SIMPLE") => None,
        (Some(name), _) => Some(ClientCert::Credential(name.clone())),
        (None, _) => Some(ClientCert::Files {
            cert: nonempty(&tls.client_certificate)?,
            key: nonempty(&tls.private_key)?,
        }),
    };
    let (ca, crl) = match &credential {
        Some(name) => (
            Some(CaFile::Credential(name.clone())),
            Some(CaFile::Credential(name.clone())),
        ),
        None => (
            nonempty(&tls.ca_certificates).map(CaFile::File),
            nonempty(&tls.ca_crl).map(CaFile::File),
        ),
    };
    Some(OriginTls {
        origin,
        client_cert,
        ca,
        crl,
        explicit_sni: sni.is_some(),
        server_name: Some(sni.unwrap_or_else(|| to.host.to_owned())),
        subject_alt_names,
        insecure_skip_verify: tls.insecure_skip_verify.unwrap_or(false),
        alpn_h2: false,
        mesh: false,
    })
}
