//! TLS termination at Gateway servers (`protocol: HTTPS`, `tls.mode` SIMPLE, MUTUAL,
//! OPTIONAL_MUTUAL) with rustls: certificates and client CAs from files or `--credentials-dir`
//! (`material`), kept and rotated in place across reloads (`store`, `watch`), one rustls config
//! per filter chain and the SNI table of a port (`config`), client checks (`verifier`), the
//! handshake itself (`accept`), and `x-forwarded-client-cert` (`xfcc`, from `x509` facts).
//! `meshgate validate` reads the same files through `check`.
//! Upstream TLS origination: one rustls client config per cluster (`origin`), trusting a CA
//! bundle and revocation list re-read when their files change (`trust`).
//! May not touch: routing and HTTP (the proxy serves the stream `accept` returns), the YAML
//! model (`compile::tls` turns it into the plain `ServerTls` this module reads).

mod accept;
pub mod check;
mod config;
pub mod material;
pub mod origin;
mod store;
mod trust;
mod verifier;
mod watch;
pub mod x509;
mod xfcc;

use std::time::Duration;

pub use accept::{handshake, read_client_hello, read_hello, sni, Hello, Stream, TlsFacts};
pub use config::{Chain, TlsPort};
pub use store::{CertSlot, Credentials};
pub use watch::{watch, CredentialWatcher};

/// How long a client has from connecting to a finished handshake (istiod gives gateway filter
/// chains a 15 s `transport_socket_connect_timeout`). Default for `--tls-handshake-timeout`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
