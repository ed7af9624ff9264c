//! A Gateway server's `tls` block → `ServerTls`, the plain-data TLS policy of one filter chain
//! (modes, where the certificate and client CA come from, client-certificate checks, versions,
//! cipher suites). Validation errors and "not supported" warnings for those fields live here.
//! May not touch: files, rustls (`crate::tls` turns a `ServerTls` into a rustls config).

use std::path::Path;

use crate::config::{self, ErrorKind};

use super::headers::invalid;
use super::Ctx;

/// How a terminating server treats client certificates (`tls.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAuth {
    /// `SIMPLE`: none requested.
    None,
    /// `OPTIONAL_MUTUAL`: requested, verified when sent.
    Optional,
    /// `MUTUAL`: required and verified.
    Required,
}

/// Where the server certificate and key come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertSource {
    /// `serverCertificate` / `privateKey` (or the first `tlsCertificates` entry).
    Files { cert: String, key: String },
    /// `credentialName`: `<credentials-dir>/<name>/tls.crt` and `tls.key`.
    Credential(String),
}

/// Where the CA bundle that verifies client certificates comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CaSource {
    /// `caCertificates`.
    File(String),
    /// `ca.crt` in the credential's folder, or the folder `<name>-cacert` (Istio's convention);
    /// `caCertCredentialName` names the credential directly.
    Credential(String),
}

/// Where the revocation list that checks client certificates comes from (MUTUAL and
/// OPTIONAL_MUTUAL).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CrlSource {
    /// `caCrl`: a PEM file; it must load.
    File(String),
    /// `ca.crl` in the CA's credential folder (or `<name>-cacert`), when it has one (Istio's
    /// Secret key `ca.crl`).
    Credential(String),
}

/// TLS protocol versions meshgate serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// TLS 1.2 cipher suites meshgate can serve (OpenSSL names in Istio config). TLS 1.3 suites are
/// always on, as in Envoy (`cipherSuites` applies to TLS ≤ 1.2 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    EcdheEcdsaAes128GcmSha256,
    EcdheEcdsaAes256GcmSha384,
    EcdheEcdsaChacha20Poly1305,
    EcdheRsaAes128GcmSha256,
    EcdheRsaAes256GcmSha384,
    EcdheRsaChacha20Poly1305,
}

/// The TLS policy of one HTTPS server (one filter chain).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerTls {
    pub client_auth: ClientAuth,
    pub cert: CertSource,
    /// Set for `MUTUAL` and `OPTIONAL_MUTUAL`.
    pub ca: Option<CaSource>,
    /// Client certificates this list revokes are refused (`MUTUAL` and `OPTIONAL_MUTUAL`).
    pub crl: Option<CrlSource>,
    /// A client certificate must carry one of these SANs (exact match). Empty: any.
    pub subject_alt_names: Vec<String>,
    /// Base64 SHA-256 of the client certificate's SubjectPublicKeyInfo.
    pub spki_sha256: Vec<Vec<u8>>,
    /// SHA-256 of the client certificate (DER).
    pub cert_sha256: Vec<Vec<u8>>,
    /// Default is TLS 1.2 (Envoy's server default).
    pub min_version: TlsVersion,
    /// Default is TLS 1.3.
    pub max_version: TlsVersion,
    /// TLS 1.2 suites in preference order; empty is rustls' default list.
    pub cipher_suites: Vec<CipherSuite>,
}

/// OpenSSL names meshgate maps, and those Envoy knows that rustls does not implement.
const SUITES: &[(&str, CipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::EcdheEcdsaAes128GcmSha256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::EcdheEcdsaAes256GcmSha384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::EcdheEcdsaChacha20Poly1305,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::EcdheRsaAes128GcmSha256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::EcdheRsaAes256GcmSha384,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::EcdheRsaChacha20Poly1305,
    ),
];
const KNOWN_UNSUPPORTED: &[&str] = &[
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
    "ECDHE-PSK-AES128-CBC-SHA",
    "ECDHE-PSK-AES256-CBC-SHA",
    "ECDHE-PSK-CHACHA20-POLY1305",
    "PSK-AES128-CBC-SHA",
    "PSK-AES256-CBC-SHA",
];

/// The mode of a `tls` block, upper case; unset is `PASSTHROUGH` (the enum's zero).
pub(super) fn mode(t: &config::ServerTlsSettings) -> String {
    t.mode
        .as_deref()
        .unwrap_or("PASSTHROUGH")
        .to_ascii_uppercase()
}

/// Does this `tls` block terminate TLS at meshgate (SIMPLE, MUTUAL, OPTIONAL_MUTUAL, and
/// ISTIO_MUTUAL when the gateway has a mesh identity, `mesh_certs_dir`)?
pub(super) fn terminates(t: &config::ServerTlsSettings, mesh_certs_dir: Option<&Path>) -> bool {
    match mode(t).as_str() {
        "SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL" => true,
        "ISTIO_MUTUAL" => mesh_certs_dir.is_some(),
        _ => false,
    }
}

/// Checks the fields `validate::gateway` does not (versions, pins, suites, fields not applied
/// yet) for a terminating server. `f` is the `tls` block's field path.
pub(super) fn check(t: &config::ServerTlsSettings, f: &str, cx: &mut Ctx<'_>) {
    let min = version(
        t.min_protocol_version.as_deref(),
        &format!("{f}.minProtocolVersion"),
        cx,
    );
    let max = version(
        t.max_protocol_version.as_deref(),
        &format!("{f}.maxProtocolVersion"),
        cx,
    );
    if let (Some(Some(min)), Some(Some(max))) = (min, max) {
        if min > max {
            cx.error(
                &format!("{f}.minProtocolVersion"),
                ErrorKind::Note("minProtocolVersion is above maxProtocolVersion".into()),
            );
        }
    }
    for (i, pin) in t.verify_certificate_spki.iter().enumerate() {
        if spki(pin).is_none() {
            cx.error(
                &format!("{f}.verifyCertificateSpki[{i}]"),
                invalid(
                    "SPKI pin",
                    pin,
                    "must be the base64 SHA-256 of a SubjectPublicKeyInfo",
                ),
            );
        }
    }
    for (i, h) in t.verify_certificate_hash.iter().enumerate() {
        if hash(h).is_none() {
            cx.error(
                &format!("{f}.verifyCertificateHash[{i}]"),
                invalid(
                    "certificate hash",
                    h,
                    "must be a hex SHA-256 (colons allowed)",
                ),
            );
        }
    }
    let mut seen = Vec::new();
    for (i, name) in t.cipher_suites.iter().enumerate() {
        for part in suite_names(name) {
            let field = format!("{f}.cipherSuites[{i}]");
            if seen.contains(&part) {
                cx.warn(
                    &field,
                    ErrorKind::Duplicate {
                        what: "cipher suite (ignored)",
                        value: part.to_owned(),
                        first: None,
                    },
                );
            } else if KNOWN_UNSUPPORTED.contains(&part) {
                cx.warn(
                    &field,
                    ErrorKind::NotYetSupported {
                        what: format!("cipher suite {part} (rustls has no such suite)"),
                        ignored: true,
                    },
                );
            } else if !SUITES.iter().any(|(n, _)| *n == part) {
                cx.warn(
                    &field,
                    invalid("cipher suite", part, "unknown name; ignored"),
                );
            }
            seen.push(part);
        }
    }
    let ignored = |cx: &mut Ctx<'_>, field: &str, what: &str| {
        cx.warn(
            &format!("{f}.{field}"),
            ErrorKind::NotYetSupported {
                what: what.into(),
                ignored: true,
            },
        );
    };
    if t.ca_crl.as_deref().is_some_and(|c| !c.is_empty()) {
        match mode(t).as_str() {
            "MUTUAL" | "OPTIONAL_MUTUAL" => {}
            "ISTIO_MUTUAL" => ignored(cx, "caCrl", "revocation lists with ISTIO_MUTUAL"),
            _ => cx.warn(
                &format!("{f}.caCrl"),
                ErrorKind::Note(
                    "caCrl checks client certificates, which SIMPLE does not ask for: ignored by Istio too".into(),
                ),
            ),
        }
    }
    if t.insecure_skip_verify.is_some() {
        ignored(
            cx,
            "insecureSkipVerify",
            "accepting client certificates that fail verification",
        );
    }
    if t.credential_names.len() > 1 {
        ignored(
            cx,
            "credentialNames",
            "a second certificate (RSA and ECDSA pairs; the first is served)",
        );
    }
    if t.tls_certificates.len() > 1 {
        ignored(
            cx,
            "tlsCertificates",
            "a second certificate (RSA and ECDSA pairs; the first is served)",
        );
    }
}

/// The policy of a terminating server whose block passed `check` (`None` otherwise).
/// ISTIO_MUTUAL serves the gateway's workload certificate from `mesh_certs_dir` and requires a
/// client certificate the mesh root signed (as an Istio gateway does for in-mesh clients).
pub(super) fn server_tls(
    t: &config::ServerTlsSettings,
    mesh_certs_dir: Option<&Path>,
) -> Option<ServerTls> {
    let mode = mode(t);
    let client_auth = match mode.as_str() {
        "SIMPLE" => ClientAuth::None,
        "MUTUAL" | "ISTIO_MUTUAL" => ClientAuth::Required,
        "OPTIONAL_MUTUAL" => ClientAuth::Optional,
        _ => return None,
    };
    let first_pair = t.tls_certificates.first();
    let (cert, ca_file) = if mode == "ISTIO_MUTUAL" {
        let mesh = super::origin::MeshFiles::in_dir(mesh_certs_dir?);
        let files = CertSource::Files {
            cert: mesh.cert,
            key: mesh.key,
        };
        (files, Some(mesh.root))
    } else if let Some(name) = t.credential_name.as_ref().or(t.credential_names.first()) {
        (CertSource::Credential(name.clone()), None)
    } else if let Some(pair) = first_pair {
        let files = CertSource::Files {
            cert: pair.server_certificate.clone()?,
            key: pair.private_key.clone()?,
        };
        (files, pair.ca_certificates.clone())
    } else {
        let files = CertSource::Files {
            cert: t.server_certificate.clone()?,
            key: t.private_key.clone()?,
        };
        (files, None)
    };
    let ca = match client_auth {
        ClientAuth::None => None,
        _ => Some(if let Some(name) = &t.ca_cert_credential_name {
            CaSource::Credential(name.clone())
        } else if let Some(path) = t.ca_certificates.clone().or(ca_file) {
            CaSource::File(path)
        } else if let CertSource::Credential(name) = &cert {
            CaSource::Credential(name.clone())
        } else {
            return None;
        }),
    };
    let crl = match (&ca, t.ca_crl.as_deref().filter(|c| !c.is_empty())) {
        (None, _) => None,
        // The mesh root's revocation is Istio's business, not the Gateway's.
        _ if mode == "ISTIO_MUTUAL" => None,
        (Some(_), Some(path)) => Some(CrlSource::File(path.to_owned())),
        (Some(CaSource::Credential(name)), None) => Some(CrlSource::Credential(name.clone())),
        (Some(CaSource::File(_)), None) => None,
    };
    let mut cipher_suites = Vec::new();
    for name in &t.cipher_suites {
        for part in suite_names(name) {
            if let Some((_, s)) = SUITES.iter().find(|(n, _)| *n == part) {
                if !cipher_suites.contains(s) {
                    cipher_suites.push(*s);
                }
            }
        }
    }
    let v = |s: &Option<String>| version_of(s.as_deref()).ok().flatten();
    Some(ServerTls {
        client_auth,
        cert,
        ca,
        crl,
        subject_alt_names: t.subject_alt_names.clone(),
        spki_sha256: t
            .verify_certificate_spki
            .iter()
            .filter_map(|p| spki(p))
            .collect(),
        cert_sha256: t
            .verify_certificate_hash
            .iter()
            .filter_map(|h| hash(h))
            .collect(),
        min_version: v(&t.min_protocol_version).unwrap_or(TlsVersion::V1_2),
        max_version: v(&t.max_protocol_version).unwrap_or(TlsVersion::V1_3),
        cipher_suites,
    })
}

/// `Some(None)` is `TLS_AUTO` or unset; `None` an error (reported).
fn version(value: Option<&str>, field: &str, cx: &mut Ctx<'_>) -> Option<Option<TlsVersion>> {
    match version_of(value) {
        Ok(v) => Some(v),
        Err(why) => {
            cx.error(field, invalid("TLS version", value.unwrap_or(""), why));
            None
        }
    }
}

fn version_of(value: Option<&str>) -> Result<Option<TlsVersion>, &'static str> {
    match value.map(str::to_ascii_uppercase).as_deref() {
        None | Some("TLS_AUTO") => Ok(None),
        Some("TLSV1_2") => Ok(Some(TlsVersion::V1_2)),
        Some("TLSV1_3") => Ok(Some(TlsVersion::V1_3)),
        Some("TLSV1_0" | "TLSV1_1") => {
            Err("TLS 1.0 and 1.1 are not served by meshgate (rustls implements TLS 1.2 and 1.3); use TLSV1_2 or TLSV1_3")
        }
        Some(_) => Err("use TLS_AUTO, TLSV1_2 or TLSV1_3"),
    }
}

/// Envoy's equal-preference groups `[A|B]` count as their members.
fn suite_names(entry: &str) -> impl Iterator<Item = &str> {
    entry
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn spki(pin: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(pin.trim())
        .ok()?;
    (bytes.len() == 32).then_some(bytes)
}

fn hash(h: &str) -> Option<Vec<u8>> {
    let hex: String = h.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return None;
    }
    (0..32)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_preference_groups_are_split() {
        let names: Vec<&str> =
            suite_names("[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]").collect();
        assert_eq!(
            names,
            [
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-CHACHA20-POLY1305"
            ]
        );
    }

    #[test]
    fn hashes_accept_colons_and_case() {
        let h = "df:6F".repeat(16);
        assert_eq!(hash(&h).map(|v| v.len()), Some(32));
        assert!(hash("abc").is_none());
    }

    #[test]
    fn old_versions_are_errors() {
        assert!(version_of(Some("TLSV1_0")).is_err());
        assert!(version_of(Some("TLSV1_1")).is_err());
        assert_eq!(version_of(Some("tlsv1_3")), Ok(Some(TlsVersion::V1_3)));
        assert_eq!(version_of(Some("TLS_AUTO")), Ok(None));
    }
}
