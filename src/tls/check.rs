//! `meshgate validate`'s file checks: every certificate, key, CA bundle and revocation list the
//! compiled config names is read and parsed as serving would, and each problem becomes one
//! line naming the resource, the field, the file and the reason (serving only logs them).
//! Credentials (`credentialName`) are checked only when a credentials folder is given.
//! May not touch: the slots and watches of a running gateway (nothing here is kept).

use std::path::Path;

use crate::compile::tls::{CaSource, CertSource, CrlSource, ServerTls};
use crate::compile::Compiled;
use crate::upstream::{CaFile, ClientCert, OriginTls};

use super::config::{ca_files, cert_field};
use super::material::{cert_paths, load_ca, load_cert, load_crls, LoadError};
use super::store::verifiers;

/// The problems with the files `compiled` names, one line each, without duplicates.
pub fn files(compiled: &Compiled, credentials_dir: Option<&Path>) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |line: String| {
        if !out.contains(&line) {
            out.push(line);
        }
    };
    for chain in compiled.listeners.iter().flat_map(|l| &l.chains) {
        if credentials_dir.is_none() && server_names_credential(&chain.tls) {
            continue;
        }
        for (field, e) in server(&chain.tls, credentials_dir) {
            push(format!("{}: {}.{field}: {e}", chain.source, chain.field));
        }
    }
    for tls in compiled.clusters.iter().filter_map(|c| c.tls.as_ref()) {
        if credentials_dir.is_none() && origin_names_credential(tls) {
            continue;
        }
        if let Err(e) = super::origin::origination(tls, credentials_dir) {
            push(e);
        }
    }
    out
}

/// The problems of one server's files: its certificate pair, then its CA bundle and list.
fn server(tls: &ServerTls, dir: Option<&Path>) -> Vec<(&'static str, LoadError)> {
    let mut errors = Vec::new();
    let field = cert_field(tls);
    match cert_paths(&tls.cert, dir) {
        Err(e) => errors.push((field, e)),
        Ok(paths) => {
            if let Err(e) = load_cert(&paths) {
                let key = matches!(tls.cert, CertSource::Files { .. })
                    && e.path() == Some(paths.key.as_path());
                errors.push((if key { "privateKey" } else { field }, e));
            }
        }
    }
    match ca_files(tls, dir) {
        None => {}
        Some(Err(e)) => errors.push(e),
        Some(Ok(ca)) => {
            // Each file on its own, then the verifiers (which parse the lists) when both read.
            let bundle = load_ca(&ca.files.ca).err().map(|e| (ca.field, e));
            let list = ca.files.crl.as_ref().and_then(|c| load_crls(c).err());
            let list = list.map(|e| (ca.crl_field, e));
            if bundle.is_none() && list.is_none() {
                if let Err(e) = verifiers(&ca.files) {
                    errors.push((ca.files.field_of(&e, ca.field, ca.crl_field), e));
                }
            }
            errors.extend(bundle.into_iter().chain(list));
        }
    }
    errors
}

fn server_names_credential(tls: &ServerTls) -> bool {
    matches!(tls.cert, CertSource::Credential(_))
        || matches!(tls.ca, Some(CaSource::Credential(_)))
        || matches!(tls.crl, Some(CrlSource::Credential(_)))
}

fn origin_names_credential(tls: &OriginTls) -> bool {
    matches!(tls.client_cert, Some(ClientCert::Credential(_)))
        || matches!(tls.ca, Some(CaFile::Credential(_)))
        || matches!(tls.crl, Some(CaFile::Credential(_)))
}
