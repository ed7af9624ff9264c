//! What a request head must satisfy before it is routed, as Envoy's HTTP/1 codec and connection
//! manager check it: the CONNECT form, transfer codings, and the `Host`/`:authority` syntax.
//! May not touch: routing, bodies, the snapshot. Pure functions of the head; never panic.

use http::{header, HeaderMap, Method, Request};

use super::error::ProxyError;

/// Checks the method form and transfer codings (Envoy's codec errors).
///
/// # Errors
/// `ConnectForm` (400) for a CONNECT not in authority-form, `ConnectNotAllowed` (403) for an
/// authority-form CONNECT (not enabled), `TransferCoding` (501) for any `transfer-encoding` other
/// than a single `chunked`.
pub fn check_head<B>(req: &Request<B>) -> Result<(), ProxyError> {
    if req.method() == Method::CONNECT {
        let uri = req.uri();
        let authority_form =
            uri.scheme().is_none() && uri.authority().is_some() && uri.path_and_query().is_none();
        return Err(if authority_form {
            ProxyError::ConnectNotAllowed
        } else {
            ProxyError::ConnectForm
        });
    }
    if !transfer_coding_ok(req.headers()) {
        return Err(ProxyError::TransferCoding);
    }
    Ok(())
}

/// No `transfer-encoding`, or exactly one coding in all its values together, and that `chunked`.
fn transfer_coding_ok(headers: &HeaderMap) -> bool {
    let mut codings = 0;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        for coding in value.split(',') {
            codings += 1;
            if codings > 1 || !coding.trim().eq_ignore_ascii_case("chunked") {
                return false;
            }
        }
    }
    true
}

/// The request's authority: `:authority` (HTTP/2, absolute-form) or the one `Host` header.
///
/// # Errors
/// `MissingHost` when there is none (or it is empty), `InvalidHost` when it holds a byte an
/// authority cannot hold or `Host` appears more than once (RFC 9112 §3.2).
pub fn authority<B>(req: &Request<B>) -> Result<&str, ProxyError> {
    let value = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => {
            let mut hosts = req.headers().get_all(header::HOST).iter();
            let host = hosts.next().ok_or(ProxyError::MissingHost)?;
            if hosts.next().is_some() {
                return Err(ProxyError::InvalidHost);
            }
            host.to_str().map_err(|_| ProxyError::InvalidHost)?
        }
    };
    if value.is_empty() {
        return Err(ProxyError::MissingHost);
    }
    if !authority_is_valid(value) {
        return Err(ProxyError::InvalidHost);
    }
    Ok(value)
}

/// The bytes an authority may hold (RFC 3986 `host [":" port]` with userinfo and IP literals):
/// unreserved, sub-delims, `:`, `@`, `[`, `]` and `%`, the set Envoy checks (nghttp2's
/// `check_authority`). No `/`, `?`, `#`, spaces, quotes, backslashes or control characters.
pub fn authority_is_valid(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| AUTHORITY_BYTES[usize::from(b)])
}

/// `authority_is_valid`'s bytes, one look-up per byte.
static AUTHORITY_BYTES: [bool; 256] = authority_bytes();

const fn authority_bytes() -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'['
                    | b']'
                    | b'%'
            );
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn connect_forms() {
        let check = |t| {
            check_head(&req("CONNECT", t, &[]))
                .unwrap_err()
                .status()
                .as_u16()
        };
        assert_eq!(check("/x"), 400);
        assert_eq!(check("http://h/x"), 400);
        assert_eq!(check("h:443"), 403);
    }

    #[test]
    fn only_a_single_chunked_coding() {
        let te = |v| check_head(&req("POST", "/", &[("transfer-encoding", v)])).is_ok();
        assert!(te("chunked"));
        assert!(te(" Chunked "));
        assert!(!te("gzip, chunked"));
        assert!(!te("chunked, chunked"));
        assert!(!te("gzip"));
        assert!(!te(""));
    }

    /// The exact set of authority bytes, every one of the 256 checked.
    #[test]
    fn authority_bytes_are_envoys_set() {
        const ALLOWED: &[u8] = b"!$%&'()*+,-.0123456789:;=@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_\
                                abcdefghijklmnopqrstuvwxyz~";
        for b in 0..=255u8 {
            assert_eq!(
                AUTHORITY_BYTES[usize::from(b)],
                ALLOWED.contains(&b),
                "byte {b:#04x}"
            );
        }
    }

    #[test]
    fn authorities() {
        for ok in ["x", "x:80", "[::1]:8080", "u@h", "a-b.c_d~"] {
            assert_eq!(authority(&req("GET", "/", &[("host", ok)])).ok(), Some(ok));
        }
        for bad in ["a/admin?", "a b", "a\tb", "a\"b", "a#", "a\\b", "a{b}"] {
            let r = req("GET", "/", &[("host", bad)]);
            assert!(
                matches!(authority(&r), Err(ProxyError::InvalidHost)),
                "{bad}"
            );
        }
        let two = req("GET", "/", &[("host", "a"), ("host", "b")]);
        assert!(matches!(authority(&two), Err(ProxyError::InvalidHost)));
        assert!(matches!(
            authority(&req("GET", "/", &[])),
            Err(ProxyError::MissingHost)
        ));
    }
}
