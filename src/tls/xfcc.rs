//! `x-forwarded-client-cert` as Istio's ingress gateway sets it: istiod configures gateways with
//! `forward_client_cert_details: SANITIZE_SET` and `set_current_client_cert_details {subject,
//! cert, uri, dns}`, so a request on a connection with a verified client certificate carries
//! this hop's details only (a client-sent header is dropped), in Envoy's order:
//! `By=<our URI SANs>;Hash=<sha256>;Cert="<url-encoded PEM>";Subject="<RFC 2253>";URI=<uri
//! SANs, or empty>;DNS=<each DNS SAN>`.
//! May not touch: the handshake (`accept` calls this once per connection).

use http::HeaderValue;

use super::material::sha256;
use super::x509;

/// The header value for a client certificate (`leaf`, DER) presented to a server whose own
/// certificate has the URI SANs `by`. `None` if the certificate does not parse.
pub fn value(leaf: &[u8], by: &[String]) -> Option<HeaderValue> {
    let facts = x509::facts(leaf)?;
    let mut parts: Vec<String> = by.iter().map(|u| format!("By={u}")).collect();
    parts.push(format!("Hash={}", x509::hex(&sha256(&[leaf]))));
    parts.push(format!("Cert=\"{}\"", x509::url_encoded_pem(leaf)));
    parts.push(format!("Subject=\"{}\"", facts.subject));
    if facts.uri_sans.is_empty() {
        parts.push("URI=".into());
    }
    parts.extend(facts.uri_sans.iter().map(|u| format!("URI={u}")));
    parts.extend(facts.dns_sans.iter().map(|d| format!("DNS={d}")));
    HeaderValue::from_str(&parts.join(";")).ok()
}
