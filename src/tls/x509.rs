//! What meshgate reads out of an X.509 certificate: subject (RFC 2253, as Envoy prints it),
//! subject alternative names, the SubjectPublicKeyInfo, and the PEM text.
//! May not touch: verification (rustls and `verifier` decide whether a certificate is trusted).

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

/// The facts of one certificate that `x-forwarded-client-cert` and the client checks use.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// RFC 2253, most specific first: `CN=client,O=Example,C=US`.
    pub subject: String,
    pub dns_sans: Vec<String>,
    pub uri_sans: Vec<String>,
    /// DNS, URI, e-mail and IP SANs, for `subjectAltNames` (exact match against any of them).
    pub all_sans: Vec<String>,
    /// DER of the SubjectPublicKeyInfo (pinned by `verifyCertificateSpki`).
    pub spki: Vec<u8>,
}

/// Parses `der`; `None` if it is not a certificate.
pub fn facts(der: &[u8]) -> Option<CertFacts> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut out = CertFacts {
        subject: rfc2253(cert.subject()),
        spki: cert.public_key().raw.to_vec(),
        ..CertFacts::default()
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    out.dns_sans.push((*d).to_owned());
                    out.all_sans.push((*d).to_owned());
                }
                GeneralName::URI(u) => {
                    out.uri_sans.push((*u).to_owned());
                    out.all_sans.push((*u).to_owned());
                }
                GeneralName::RFC822Name(e) => out.all_sans.push((*e).to_owned()),
                GeneralName::IPAddress(ip) => {
                    let ip = match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        16 => <[u8; 16]>::try_from(*ip)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        _ => None,
                    };
                    out.all_sans.extend(ip);
                }
                _ => {}
            }
        }
    }
    Some(out)
}

/// URI SANs of a certificate (empty if it does not parse).
pub fn uri_sans(der: &[u8]) -> Vec<String> {
    facts(der).map(|f| f.uri_sans).unwrap_or_default()
}

/// OpenSSL's `XN_FLAG_RFC2253` rendering (what Envoy's `subjectPeerCertificate` returns): RDNs
/// last to first, joined by `,`, short attribute names, special characters escaped.
fn rfc2253(name: &X509Name<'_>) -> String {
    let mut rdns: Vec<String> = Vec::new();
    for rdn in name.iter() {
        let parts: Vec<String> = rdn
            .iter()
            .map(|atv| {
                let oid = atv.attr_type().to_id_string();
                let key = short_name(&oid).map(str::to_owned).unwrap_or(oid);
                let value = match atv.as_str() {
                    Ok(v) => escape(v),
                    Err(_) => format!("#{}", hex(atv.attr_value().data)),
                };
                format!("{key}={value}")
            })
            .collect();
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    rdns.join(",")
}

fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.5" => "serialNumber",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "2.5.4.4" => "SN",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The certificate as OpenSSL's `PEM_write_bio_X509` writes it (64-column base64), URL-encoded
/// the way Envoy puts it in `Cert="…"`.
pub fn url_encoded_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut out = String::with_capacity(pem.len() + pem.len() / 8);
    for c in pem.chars() {
        match c {
            '\n' => out.push_str("%0A"),
            ' ' => out.push_str("%20"),
            '+' => out.push_str("%2B"),
            '/' => out.push_str("%2F"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2253_escapes_specials() {
        assert_eq!(escape("a,b"), "a\\,b");
        assert_eq!(escape(" lead"), "\\ lead");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn pem_is_url_encoded_like_envoy() {
        let out = url_encoded_pem(&[0xfb; 60]);
        assert!(out.starts_with("-----BEGIN%20CERTIFICATE-----%0A"));
        assert!(out.ends_with("-----END%20CERTIFICATE-----%0A"));
        assert!(!out.contains('/') && !out.contains('+') && !out.contains('\n'));
    }
}
