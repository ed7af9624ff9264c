//! Client-certificate verification of one MUTUAL / OPTIONAL_MUTUAL filter chain: the CA slot's
//! current verifier (so a rotated bundle or revocation list applies to new handshakes), then the server's
//! `subjectAltNames` and `verifyCertificateSpki` / `verifyCertificateHash` pins, as Envoy's
//! validation context applies them.
//! May not touch: loading files (`store` rotates the CA bundle underneath).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::material::sha256;
use super::store::CaSlot;
use super::x509;

/// The client checks of one chain.
#[derive(Debug)]
pub struct ChainVerifier {
    pub ca: Arc<CaSlot>,
    /// `MUTUAL`: a certificate is required; `OPTIONAL_MUTUAL`: verified when sent.
    pub mandatory: bool,
    pub subject_alt_names: Vec<String>,
    pub spki_sha256: Vec<Vec<u8>>,
    pub cert_sha256: Vec<Vec<u8>>,
}

/// Verifies signatures with the ring provider's algorithms (what the CA verifier uses too).
pub(super) fn algorithms() -> &'static rustls::crypto::WebPkiSupportedAlgorithms {
    static ALGS: std::sync::OnceLock<rustls::crypto::WebPkiSupportedAlgorithms> =
        std::sync::OnceLock::new();
    ALGS.get_or_init(|| rustls::crypto::ring::default_provider().signature_verification_algorithms)
}

// === impl ChainVerifier ===

impl ChainVerifier {
    fn inner(&self) -> Result<Arc<dyn ClientCertVerifier>, Error> {
        let v = self.ca.current().ok_or_else(|| {
            Error::General(format!(
                "client CA bundle {} is not loaded",
                self.ca.files.ca.display()
            ))
        })?;
        Ok(if self.mandatory {
            v.required.clone()
        } else {
            v.optional.clone()
        })
    }

    /// `subjectAltNames`, then the pins (either list matching is enough, as in Envoy).
    fn check_identity(&self, end_entity: &CertificateDer<'_>) -> Result<(), Error> {
        let pinned = !self.spki_sha256.is_empty() || !self.cert_sha256.is_empty();
        if self.subject_alt_names.is_empty() && !pinned {
            return Ok(());
        }
        let facts = x509::facts(end_entity.as_ref())
            .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if !self.subject_alt_names.is_empty()
            && !facts
                .all_sans
                .iter()
                .any(|san| self.subject_alt_names.contains(san))
        {
            return Err(Error::InvalidCertificate(CertificateError::NotValidForName));
        }
        if pinned {
            let spki = sha256(&[&facts.spki]);
            let hash = sha256(&[end_entity.as_ref()]);
            if !self.spki_sha256.contains(&spki) && !self.cert_sha256.contains(&hash) {
                return Err(Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        Ok(())
    }
}

impl ClientCertVerifier for ChainVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    // The bundle rotates underneath, so no borrowed hint list can be returned: clients get no
    // CA hints and send the certificate they have (curl, Go, Java and browsers all do).
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner()?
            .verify_client_cert(end_entity, intermediates, now)?;
        self.check_identity(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}
