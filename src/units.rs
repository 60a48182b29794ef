//! Byte sizes as users write them. Decimal units are powers of 1000 (`512KB` = 512,000 bytes, as
//! datasheets quote memories), binary units powers of 1024 (`512KiB` = 524,288 bytes); a bare
//! number is bytes.

#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "'{text}' is not a size: {reason}; write e.g. 512KB (= 512,000 bytes), 512KiB (= 524,288 bytes), 0.5MB or 524288"
)]
pub struct SizeError {
    pub text: String,
    pub reason: &'static str,
}

const UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KB", 1000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("KIB", 1024),
    ("MIB", 1024 * 1024),
    ("GIB", 1024 * 1024 * 1024),
    ("K", 1000),
    ("M", 1_000_000),
];

/// Parses `512KB`, `512 KiB`, `0.5MB` or `524288` into bytes.
pub fn parse_bytes(text: &str) -> Result<u64, SizeError> {
    let err = |reason| SizeError {
        text: text.to_string(),
        reason,
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() {
        return Err(err("it does not start with a number"));
    }
    let value: f64 = number.parse().map_err(|_| err("the number is malformed"))?;
    let unit = unit.trim().to_ascii_uppercase();
    let multiplier = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, m)| *m)
            .ok_or_else(|| err("unknown unit (use B, KB, MB, GB, KiB, MiB or GiB)"))?
    };
    let bytes = value * multiplier as f64;
    if bytes.fract() != 0.0 {
        return Err(err("it is not a whole number of bytes"));
    }
    if bytes <= 0.0 {
        return Err(err("it must be positive"));
    }
    if bytes > u64::MAX as f64 / 2.0 {
        return Err(err("it is too large"));
    }
    Ok(bytes as u64)
}

/// Parses a latency into cycles: `5ms`, `250us`, `0.01s` (converted at `clock_hz`) or
/// `2000000cycles` / a bare number of cycles.
pub(crate) fn parse_latency(text: &str, clock_hz: f64) -> Result<f64, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .ok_or_else(|| {
            format!("'{text}' is not a latency; write e.g. 5ms, 250us, 0.01s or 2000000cycles")
        })?;
    let seconds = match unit.trim() {
        "" | "cycles" | "cycle" => return Ok(value),
        "s" => value,
        "ms" => value * 1e-3,
        "us" => value * 1e-6,
        other => {
            return Err(format!(
                "'{text}': unknown unit '{other}' (use s, ms, us or cycles)"
            ));
        }
    };
    Ok(seconds * clock_hz)
}

/// `524,288 B`: exact, with thousands separators.
pub fn format_bytes(bytes: u64) -> String {
    format!("{} B", group_thousands(bytes))
}

pub(crate) fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        assert_eq!(parse_bytes("512KB"), Ok(512_000));
        assert_eq!(parse_bytes("512kb"), Ok(512_000));
        assert_eq!(parse_bytes("512KiB"), Ok(524_288));
        assert_eq!(parse_bytes("512 KiB"), Ok(524_288));
        assert_eq!(parse_bytes("0.5MB"), Ok(500_000));
        assert_eq!(parse_bytes("0.5MiB"), Ok(524_288));
        assert_eq!(parse_bytes("524288"), Ok(524_288));
        assert_eq!(parse_bytes("2MB"), Ok(2_000_000));
        assert_eq!(parse_bytes("100B"), Ok(100));
    }

    #[test]
    fn garbage_is_rejected_with_the_reason() {
        for (text, reason) in [
            ("", "it does not start with a number"),
            ("KB", "it does not start with a number"),
            ("-5KB", "it does not start with a number"),
            ("1.2.3KB", "the number is malformed"),
            ("512XB", "unknown unit (use B, KB, MB, GB, KiB, MiB or GiB)"),
            ("0.3B", "it is not a whole number of bytes"),
            ("0", "it must be positive"),
        ] {
            let e = parse_bytes(text).unwrap_err();
            assert_eq!(e.reason, reason, "{text}");
            assert!(e.to_string().contains("512KiB (= 524,288 bytes)"));
        }
    }

    #[test]
    fn latencies() {
        assert_eq!(parse_latency("5ms", 100e6), Ok(500_000.0));
        assert_eq!(parse_latency("250us", 100e6), Ok(25_000.0));
        assert_eq!(parse_latency("1200cycles", 100e6), Ok(1200.0));
        assert_eq!(parse_latency("1200", 100e6), Ok(1200.0));
        assert!(
            parse_latency("fast", 100e6)
                .unwrap_err()
                .contains("not a latency")
        );
        assert!(
            parse_latency("5min", 100e6)
                .unwrap_err()
                .contains("unknown unit")
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(524_288), "524,288 B");
        assert_eq!(format_bytes(12), "12 B");
    }
}
