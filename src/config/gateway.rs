//! `Gateway` (networking.istio.io): servers a gateway exposes.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewaySpec {
    pub servers: Vec<Server>,
    /// meshgate serves every Gateway it is given; a selector that does not select meshgate's
    /// labels is warned about.
    pub selector: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Server {
    pub port: Option<ServerPort>,
    pub hosts: Vec<String>,
    pub bind: Option<String>,
    pub tls: Option<ServerTlsSettings>,
    pub name: Option<String>,
    pub default_endpoint: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerPort {
    pub number: Option<i64>,
    pub protocol: Option<String>,
    pub name: Option<String>,
    pub target_port: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerTlsSettings {
    pub https_redirect: bool,
    pub mode: Option<String>,
    pub server_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
    pub ca_crl: Option<String>,
    pub credential_name: Option<String>,
    pub credential_names: Vec<String>,
    pub tls_certificates: Vec<TlsCertificate>,
    pub ca_cert_credential_name: Option<String>,
    pub subject_alt_names: Vec<String>,
    pub verify_certificate_spki: Vec<String>,
    pub verify_certificate_hash: Vec<String>,
    pub min_protocol_version: Option<String>,
    pub max_protocol_version: Option<String>,
    pub cipher_suites: Vec<String>,
    pub insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsCertificate {
    pub server_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
}
