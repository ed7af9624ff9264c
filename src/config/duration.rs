//! Go-style duration strings (`1h`, `1m30s`, `250ms`, `1.5s`) as Istio accepts them.

use std::time::Duration;

/// Parses a Go duration string. Negative durations and an empty string are rejected.
///
/// # Errors
/// A short reason when the text is not a duration.
pub fn parse(s: &str) -> Result<Duration, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration");
    }
    if s.starts_with('-') {
        return Err("negative duration");
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total_nanos: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("missing unit (use ms, s, m or h)")?;
        if num_len == 0 {
            return Err("expected a number");
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| "bad number")?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err("unknown unit (use ns, us, ms, s, m or h)"),
        };
        total_nanos += value * nanos_per;
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return Err("duration too large");
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("").is_err());
        assert!(parse("10").is_err());
        assert!(parse("-1s").is_err());
        assert!(parse("5 parsecs").is_err());
        assert!(parse("s").is_err());
    }
}
