//! Path normalisation as Istio's default (`pathNormalization: BASE`): dot-segments removed,
//! percent-encoded unreserved characters decoded, `\` turned into `/`; `%2F` kept; `%00` rejected,
//! and so is an escape that decoding would create (`%%34%31`, `%4%31`: a second decoding, by the
//! backend, would read `%41`), so the result is final: normalising it again changes nothing.
//! Servlet path parameters on dot-segments (`..;x`, `.;x`, also `..%3Bx`) count as dot-segments,
//! as Tomcat, Jetty and Spring resolve them. The normalised path is what routes match and what is
//! sent upstream. Works on bytes: no slicing of `&str` inside a character, no panics on any input.

use std::borrow::Cow;

/// `Err(())` means the request must be rejected with 400.
#[allow(clippy::result_unit_err)]
pub fn normalize(path: &str) -> Result<Cow<'_, str>, ()> {
    let needs_work = path.bytes().any(|b| b == b'%' || b == b'\\') || path.contains("/.");
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    // Decode unreserved percent-escapes; keep every other escape (and every other byte) as written.
    let bytes = path.as_bytes();
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len() + 1);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            if let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2)) {
                if let (Some(h), Some(l)) = (hex(h), hex(l)) {
                    let v = h << 4 | l;
                    if v == 0 {
                        return Err(());
                    }
                    if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                        if v.is_ascii_hexdigit() && completes_escape(&decoded) {
                            return Err(());
                        }
                        decoded.push(v);
                        i += 3;
                        continue;
                    }
                }
            }
        }
        decoded.push(if b == b'\\' { b'/' } else { b });
        i += 1;
    }
    // Only ASCII bytes were replaced by ASCII bytes: still UTF-8. Checked rather than assumed.
    let decoded = String::from_utf8(decoded).map_err(|_| ())?;
    if decoded.starts_with('/') {
        Ok(Cow::Owned(remove_dot_segments(&decoded)))
    } else {
        Ok(Cow::Owned(decoded))
    }
}

/// Would a hex digit appended to `out` complete a `%HH` that was not written as one?
fn completes_escape(out: &[u8]) -> bool {
    match out {
        [.., b'%'] => true,
        [.., b'%', h] => h.is_ascii_hexdigit(),
        _ => false,
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A segment as servlet containers see it: the part before its path parameters (`;…`, also
/// written `%3B…`). Only used to recognise dot-segments.
fn without_params(seg: &str) -> &str {
    let semi = seg.find(';');
    let escaped = seg
        .as_bytes()
        .windows(3)
        .position(|w| matches!(w, [b'%', b'3', b'b' | b'B']));
    match (semi, escaped) {
        (Some(a), Some(b)) => seg.get(..a.min(b)).unwrap_or(seg),
        (Some(a), None) | (None, Some(a)) => seg.get(..a).unwrap_or(seg),
        (None, None) => seg,
    }
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match without_params(seg) {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            _ => {
                out.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(path.len());
    for s in &out {
        result.push('/');
        result.push_str(s);
    }
    if trailing_slash || result.is_empty() {
        result.push('/');
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(normalize("/a/b?x"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn dot_segments_and_escapes() {
        assert_eq!(normalize("/a/../b").unwrap(), "/b");
        assert_eq!(normalize("/a/./b/").unwrap(), "/a/b/");
        assert_eq!(normalize("/%41%2e%2E/x").unwrap(), "/A../x");
        assert_eq!(normalize("/a/%2e%2e/b").unwrap(), "/b");
        assert_eq!(normalize("/a%2Fb").unwrap(), "/a%2Fb");
        assert_eq!(normalize("/..").unwrap(), "/");
        assert_eq!(normalize("/a/..").unwrap(), "/");
        assert_eq!(normalize("/a//b").unwrap(), "/a//b");
        assert_eq!(normalize("\\da").unwrap(), "/da");
    }

    #[test]
    fn servlet_path_parameters_on_dot_segments_are_dot_segments() {
        assert_eq!(normalize("/public/..;/admin").unwrap(), "/admin");
        assert_eq!(
            normalize("/public/..;jsessionid=1/admin").unwrap(),
            "/admin"
        );
        assert_eq!(normalize("/public/%2e%2e;/admin").unwrap(), "/admin");
        assert_eq!(normalize("/public/%2E.%3bx/admin").unwrap(), "/admin");
        assert_eq!(normalize("/public/.;x/admin").unwrap(), "/public/admin");
        assert_eq!(normalize("/a;x/b;y").unwrap(), "/a;x/b;y");
        assert_eq!(normalize("/a/..;").unwrap(), "/");
    }

    #[test]
    fn percent_before_a_multibyte_character_does_not_panic() {
        // Issue 17: `%` followed by raw UTF-8 sliced a `&str` inside a character.
        assert_eq!(normalize("/%\u{e9}x").unwrap(), "/%\u{e9}x");
        assert_eq!(normalize("/a%\u{20ac}").unwrap(), "/a%\u{20ac}");
        assert_eq!(normalize("/%4\u{e9}").unwrap(), "/%4\u{e9}");
        assert_eq!(normalize("/%").unwrap(), "/%");
        assert_eq!(normalize("/%\u{1f600}/..").unwrap(), "/");
    }

    #[test]
    fn escapes_made_by_decoding_are_rejected() {
        // Found by the `path` fuzz target: one pass turned these into new escapes.
        assert!(normalize("/public/%%32e%%32e/admin").is_err());
        assert!(normalize("/%4%41").is_err());
        assert!(normalize("/%%34%31").is_err());
        // Written escapes stay as they are; a lone % is data.
        assert_eq!(normalize("/%25%32e").unwrap(), "/%252e");
        assert_eq!(normalize("/100%/%41").unwrap(), "/100%/A");
    }

    #[test]
    fn nul_is_rejected() {
        assert!(normalize("/a%00b").is_err());
    }
}
