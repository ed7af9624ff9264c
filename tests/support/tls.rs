//! TLS for the end-to-end tests: a CA, certificates and revocation lists made with rcgen,
//! written to files, and a
//! real rustls client (SNI on or off, ALPN, optional client certificate) that records the
//! certificate the gateway presented and speaks HTTP/1.1 or HTTP/2 over the connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::Reply;

/// A certificate authority.
pub struct Ca {
    pub cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, as PEM and DER.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for these DNS names.
    pub fn server(&self, names: &[&str]) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        self.sign(params)
    }

    /// A client certificate with this CN, DNS names and URI SANs.
    pub fn client(&self, cn: &str, dns: &[&str], uris: &[&str]) -> Issued {
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
        for u in uris {
            params
                .subject_alt_names
                .push(SanType::URI((*u).try_into().unwrap()));
        }
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example Org");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// A mesh workload certificate as Istio's CA issues it: the SPIFFE identity as its only SAN,
    /// usable as server and as client.
    pub fn workload(&self, spiffe: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .subject_alt_names
            .push(SanType::URI(spiffe.try_into().unwrap()));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params)
    }

    /// A PEM certificate revocation list signed by this CA, revoking `revoked` (none: an empty
    /// list, which still makes the CA's certificates' status known).
    pub fn crl(&self, revoked: &[&Issued]) -> String {
        let when = rcgen::date_time_ymd(2024, 1, 1);
        let params = rcgen::CertificateRevocationListParams {
            this_update: when,
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|c| rcgen::RevokedCertParams {
                    serial_number: c.serial(),
                    revocation_time: when,
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.cert, &self.key)
            .unwrap()
            .pem()
            .unwrap()
    }

    fn sign(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

impl Issued {
    /// The certificate's serial number (what a revocation list names).
    pub fn serial(&self) -> rcgen::SerialNumber {
        let (_, cert) = x509_parser::parse_x509_certificate(&self.der).unwrap();
        rcgen::SerialNumber::from_slice(cert.tbs_certificate.raw_serial())
    }

    /// Writes `<dir>/<stem>.crt` and `<stem>.key`; returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let (c, k) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, &self.cert_pem).unwrap();
        std::fs::write(&k, &self.key_pem).unwrap();
        (c, k)
    }
}

/// Accepts any server certificate and remembers it (tests check which one was served).
#[derive(Debug, Default)]
pub struct Recorder {
    seen: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// How a test client connects.
#[derive(Clone, Default)]
pub struct TlsClient {
    /// `None`: no SNI extension at all.
    pub sni: Option<String>,
    pub client_cert: Option<Issued>,
    /// Offer `h2` (then `http/1.1`); otherwise only `http/1.1`.
    pub h2: bool,
    /// Offer TLS 1.2 only (else 1.2 and 1.3).
    pub tls12_only: bool,
    /// One client config for every connection of this client (and its clones), so its session
    /// tickets are offered again (rustls resumes only under the config that got them), with
    /// 0-RTT asked for.
    pub sessions: Option<Arc<std::sync::OnceLock<SharedConfig>>>,
}

/// A client config kept for resumption, and the verifier that records the server certificates.
pub type SharedConfig = (Arc<ClientConfig>, Arc<Recorder>);

/// The outcome of one request over a fresh TLS connection.
#[derive(Debug)]
pub struct TlsReply {
    pub reply: Reply,
    /// DER of the certificate the gateway presented.
    pub server_cert: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
    pub version: http::Version,
    /// The negotiated TLS version and cipher suite.
    pub tls: (Option<rustls::ProtocolVersion>, Option<rustls::CipherSuite>),
}

impl TlsClient {
    pub fn sni(name: &str) -> TlsClient {
        TlsClient {
            sni: Some(name.into()),
            ..TlsClient::default()
        }
    }

    pub fn with_cert(mut self, cert: &Issued) -> TlsClient {
        self.client_cert = Some(cert.clone());
        self
    }

    /// Resumes sessions from earlier connections of this client (and clones of it).
    pub fn with_sessions(mut self) -> TlsClient {
        self.sessions = Some(Arc::new(std::sync::OnceLock::new()));
        self
    }

    pub fn h2(mut self) -> TlsClient {
        self.h2 = true;
        self
    }

    /// GET `path` with `Host: host` over a new connection.
    pub async fn get(&self, addr: SocketAddr, host: &str, path: &str) -> Result<TlsReply, String> {
        let req = Request::builder()
            .uri(path)
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.send(addr, req).await
    }

    /// Sends `req` over a new connection (HTTP/2 when ALPN picked it).
    pub async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<Full<Bytes>>,
    ) -> Result<TlsReply, String> {
        let (tls, server_cert, alpn) = self.connect(addr).await?;
        let negotiated = {
            let c = tls.get_ref().1;
            (
                c.protocol_version(),
                c.negotiated_cipher_suite().map(|s| s.suite()),
            )
        };
        let io = TokioIo::new(tls);
        let resp = if alpn.as_deref() == Some(b"h2") {
            let host = req.headers().get("host").cloned();
            *req.uri_mut() = format!(
                "https://{}{}",
                host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("x"),
                req.uri()
            )
            .parse()
            .unwrap();
            req.headers_mut().remove("host");
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(conn);
            send.send_request(req).await
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("http1 handshake: {e}"))?;
            tokio::spawn(conn);
            send.send_request(req).await
        }
        .map_err(|e| format!("request: {e}"))?;
        let version = resp.version();
        let status: StatusCode = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(TlsReply {
            reply: Reply {
                status,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            },
            server_cert,
            alpn,
            version,
            tls: negotiated,
        })
    }
}

impl TlsClient {
    /// A TLS connection: the stream, the certificate the gateway presented, the ALPN result.
    pub async fn connect(
        &self,
        addr: SocketAddr,
    ) -> Result<(TlsStream<TcpStream>, Vec<u8>, Option<Vec<u8>>), String> {
        let recorder = Arc::new(Recorder::default());
        static TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(if self.tls12_only {
                    TLS12
                } else {
                    rustls::DEFAULT_VERSIONS
                })
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(recorder.clone());
        let mut config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some(c) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from(c.der.clone())],
                    PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
        };
        config.alpn_protocols = if self.h2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        config.enable_sni = self.sni.is_some();
        let (config, recorder) = match &self.sessions {
            None => (Arc::new(config), recorder),
            Some(shared) => shared
                .get_or_init(|| {
                    config.enable_early_data = true;
                    (Arc::new(config), recorder)
                })
                .clone(),
        };
        let name =
            ServerName::try_from(self.sni.clone().unwrap_or_else(|| "no-sni.invalid".into()))
                .map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let alpn = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
        let server_cert = recorder.seen.lock().unwrap().clone().unwrap_or_default();
        Ok((tls, server_cert, alpn))
    }

    /// An HTTP/1.1 keep-alive connection: send several requests on it.
    pub async fn open(
        &self,
        addr: SocketAddr,
    ) -> Result<
        (
            hyper::client::conn::http1::SendRequest<Full<Bytes>>,
            Vec<u8>,
        ),
        String,
    > {
        let (tls, cert, _) = self.connect(addr).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("http1 handshake: {e}"))?;
        tokio::spawn(conn);
        Ok((send, cert))
    }
}

/// YAML for a Gateway `name` with the given servers (flow-style YAML list entries).
pub fn gateway(name: &str, servers: &[String]) -> String {
    let servers: String = servers.iter().map(|s| format!("  - {s}\n")).collect();
    format!("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  servers:\n{servers}---\n")
}

/// A terminating HTTPS server entry on `port` for `hosts` with this `tls` block (flow style).
pub fn https_server(port: u16, port_name: &str, hosts: &[&str], tls: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    format!(
        "{{port: {{number: {port}, name: {port_name}, protocol: HTTPS}}, hosts: [{}], tls: {tls}}}",
        hosts.join(", ")
    )
}

/// A VirtualService `name` for `hosts` on gateways `gws`, answering every request directly with
/// `body`.
pub fn answering(name: &str, hosts: &[&str], gws: &[&str], body: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{}]\n  gateways: [{}]\n  http:\n  - directResponse: {{status: 200, body: {{string: \"{body}\"}}}}\n---\n", hosts.join(", "), gws.join(", "))
}
