//! Path normalisation as Istio's default (`pathNormalization: BASE`): dot-segments removed,
//! percent-encoded unreserved characters decoded, `\` turned into `/`; `%2F` kept; `%00` rejected.
//! The normalised path is what routes match and what is sent upstream.

use std::borrow::Cow;

/// `Err(())` means the request must be rejected with 400.
#[allow(clippy::result_unit_err)]
pub fn normalize(path: &str) -> Result<Cow<'_, str>, ()> {
    let needs_work = path.bytes().any(|b| b == b'%' || b == b'\\') || path.contains("/.");
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    // Decode unreserved percent-escapes; keep every other escape as written.
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len() + 1);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            let hex = &path[i + 1..i + 3];
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                if v == 0 {
                    return Err(());
                }
                if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                    decoded.push(v as char);
                    i += 3;
                    continue;
                }
            }
        }
        if b == b'\\' {
            decoded.push('/');
        } else {
            // Multi-byte characters were validated by the URI parser; copy bytes through.
            let ch_len = utf8_len(b);
            decoded.push_str(&path[i..(i + ch_len).min(path.len())]);
            i += ch_len;
            continue;
        }
        i += 1;
    }
    if decoded.starts_with('/') {
        Ok(Cow::Owned(remove_dot_segments(&decoded)))
    } else {
        Ok(Cow::Owned(decoded))
    }
}

fn utf8_len(b: u8) -> usize {
    match b {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
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
    fn nul_is_rejected() {
        assert!(normalize("/a%00b").is_err());
    }
}
