//! Text the request path writes on every request (addresses, numbers, hex ids, timestamps),
//! written straight into a buffer: `core::fmt` costs several times more for these, and they are
//! a measurable share of the CPU per request (`benches/RESULTS.md`).
//! May not touch: what the text means (callers own their formats).

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

/// Appends `n` in decimal.
pub fn push_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// The decimal text of 0..=999, one after another (`0123...9991000` without the last): what
/// `number_value` slices a value from.
static SMALL_NUMBERS: [u8; 2890] = {
    let mut out = [0u8; 2890];
    let (mut n, mut at) = (0usize, 0usize);
    while n < 1000 {
        if n >= 100 {
            out[at] = b'0' + (n / 100) as u8;
            at += 1;
        }
        if n >= 10 {
            out[at] = b'0' + (n / 10 % 10) as u8;
            at += 1;
        }
        out[at] = b'0' + (n % 10) as u8;
        at += 1;
        n += 1;
    }
    out
};

/// `n` in decimal as a header value. Below 1,000 (a service time in milliseconds, usually) a
/// static one: no allocation, and clones are free.
pub fn number_value(n: u64) -> http::HeaderValue {
    let (at, len) = match n {
        0..=9 => (n, 1),
        10..=99 => (10 + (n - 10) * 2, 2),
        100..=999 => (190 + (n - 100) * 3, 3),
        _ => return http::HeaderValue::from(n),
    };
    let digits = &SMALL_NUMBERS[at as usize..(at + len) as usize];
    // Only ASCII digits are in the table.
    match std::str::from_utf8(digits) {
        Ok(text) => http::HeaderValue::from_static(text),
        Err(_) => http::HeaderValue::from(n),
    }
}

/// Appends `ip` as `Display` prints it (dotted quad; IPv6 through `core::fmt`, which is rare).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut buf = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(buf.format(octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `addr` as `Display` prints it (`1.2.3.4:80`, `[::1]:80`).
pub fn push_socket_addr(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => push_ip(out, IpAddr::V4(*a.ip())),
        SocketAddr::V6(a) => {
            use std::fmt::Write;
            let _ = write!(out, "[{}", a.ip());
            if a.scope_id() != 0 {
                let _ = write!(out, "%{}", a.scope_id());
            }
            out.push(']');
        }
    }
    out.push(':');
    push_u64(out, u64::from(addr.port()));
}

/// Header values made together, written into one buffer: one allocation for all of them, and
/// values that clone without allocating. (A value made from its own `String` allocates a shared
/// header the first time it is cloned, and every upstream attempt clones the request head.)
pub struct Values(bytes::BytesMut);

impl Values {
    /// Room for `bytes` of values before the buffer grows (it still grows past that).
    pub fn with_capacity(bytes: usize) -> Values {
        Values(bytes::BytesMut::with_capacity(bytes))
    }

    /// `text` as a header value; `None` if it is not a valid one.
    pub fn value(&mut self, text: &[u8]) -> Option<http::HeaderValue> {
        self.0.extend_from_slice(text);
        http::HeaderValue::from_maybe_shared(self.0.split().freeze()).ok()
    }
}

/// `ip` as a `String`.
pub fn ip_string(ip: IpAddr) -> String {
    let mut s = String::with_capacity(15);
    push_ip(&mut s, ip);
    s
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes the low `out.len()` hex digits of `v`, lowercase, zero-padded.
/// Beyond 32 digits: zeros.
pub fn hex_into(out: &mut [u8], v: u128) {
    let (pad, out) = out.split_at_mut(out.len().saturating_sub(32));
    pad.fill(b'0');
    // A byte at a time (two digits from a table), from the last byte `out` needs.
    let bytes = v.to_be_bytes();
    let mut all = [0u8; 32];
    let first = 16 - out.len().div_ceil(2);
    for (i, b) in bytes.iter().enumerate().skip(first) {
        all[2 * i..2 * i + 2].copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
    }
    out.copy_from_slice(&all[32 - out.len()..]);
}

/// Each byte's two lowercase hex digits.
static HEX_PAIRS: [[u8; 2]; 256] = {
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    t
};

/// Appends the low `digits` hex digits of `v` (at most 32), lowercase, zero-padded.
pub fn push_hex(out: &mut String, v: u128, digits: usize) {
    let mut buf = [0u8; 32];
    let digits = digits.min(32);
    let buf = &mut buf[..digits];
    hex_into(buf, v);
    // Only ASCII hex digits were written.
    out.push_str(std::str::from_utf8(buf).unwrap_or_default());
}

thread_local! {
    /// The last second `http_date` formatted on this thread, and its text.
    static HTTP_DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends now as an HTTP `date` (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`), formatted once
/// per second per thread.
pub fn push_http_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    HTTP_DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(cached.1.as_bytes());
    })
}

thread_local! {
    /// The last second `push_time` formatted on this thread, and its text up to the seconds.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends `t` as Envoy prints `%START_TIME%`: `2026-12-01T21:43:55.123Z` (UTC, milliseconds).
/// The text up to the seconds is formatted once per second per thread.
pub fn push_time(out: &mut String, t: SystemTime) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let (days, rem) = (secs / 86_400, secs % 86_400);
            let (y, m, day) = civil_from_days(days as i64);
            let s = &mut cached.1;
            s.clear();
            push_padded(s, y.max(0) as u64, 4);
            s.push('-');
            push_padded(s, u64::from(m), 2);
            s.push('-');
            push_padded(s, u64::from(day), 2);
            s.push('T');
            push_padded(s, rem / 3600, 2);
            s.push(':');
            push_padded(s, rem % 3600 / 60, 2);
            s.push(':');
            push_padded(s, rem % 60, 2);
            s.push('.');
            cached.0 = secs;
        }
        out.push_str(&cached.1);
    });
    push_padded(out, u64::from(d.subsec_millis()), 3);
    out.push('Z');
}

/// Appends `n` in decimal, zero-padded to `width` digits.
fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let s = buf.format(n);
    for _ in s.len()..width {
        out.push('0');
    }
    out.push_str(s);
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn number_values_are_the_numbers() {
        for n in (0..1200).chain([u64::MAX]) {
            assert_eq!(number_value(n), n.to_string().as_str(), "{n}");
        }
    }

    /// Each value holds exactly its text, past its buffer's first capacity too; one that is no
    /// header value is refused and the next is whole.
    #[test]
    fn values_share_a_buffer_and_stay_apart() {
        let mut values = Values::with_capacity(8);
        let a = values.value(b"10.0.0.1").unwrap();
        assert!(values.value(b"bad\nvalue").is_none());
        let b = values
            .value(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap();
        let c = values.value(b"").unwrap();
        assert_eq!(a, "10.0.0.1");
        assert_eq!(b, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(c, "");
        assert_eq!(a.clone(), a);
    }

    #[test]
    fn addresses_print_as_display_does() {
        for a in [
            "0.0.0.0:0",
            "127.0.0.1:8080",
            "255.255.255.255:65535",
            "[::1]:443",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut s = String::new();
            push_socket_addr(&mut s, addr);
            assert_eq!(s, a);
            assert_eq!(ip_string(addr.ip()), addr.ip().to_string());
        }
    }

    #[test]
    fn hex_into_writes_the_low_digits() {
        let v: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        for len in 0..=40 {
            let mut out = vec![b'x'; len];
            hex_into(&mut out, v);
            let full = format!("{v:040x}");
            assert_eq!(
                std::str::from_utf8(&out).unwrap(),
                &full[40 - len..],
                "{len}"
            );
        }
        let mut out = [0u8; 16];
        hex_into(&mut out, u128::from(0xa1b2_c3d4_e5f6_0718_u64));
        assert_eq!(&out, b"a1b2c3d4e5f60718");
    }

    #[test]
    fn hex_is_zero_padded_lowercase() {
        let mut s = String::new();
        push_hex(&mut s, 0xabc, 8);
        assert_eq!(s, "00000abc");
        s.clear();
        push_hex(&mut s, u128::MAX, 32);
        assert_eq!(s, "ffffffffffffffffffffffffffffffff");
    }

    #[test]
    fn time_prints_as_envoy_does() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_625_435_123);
        let mut s = String::new();
        push_time(&mut s, t);
        assert_eq!(s, "2025-12-01T21:43:55.123Z");
        // Same second again (cached prefix), then the next one.
        s.clear();
        push_time(&mut s, t + Duration::from_millis(5));
        assert_eq!(s, "2025-12-01T21:43:55.128Z");
        s.clear();
        push_time(&mut s, t + Duration::from_millis(1_000));
        assert_eq!(s, "2025-12-01T21:43:56.123Z");
        s.clear();
        push_time(
            &mut s,
            SystemTime::UNIX_EPOCH + Duration::from_millis(951_782_400_007),
        );
        assert_eq!(s, "2000-02-29T00:00:00.007Z");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_423), (2025, 12, 1));
    }
}
