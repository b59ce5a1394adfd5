//! The JSON text forms Go gives the special types: times, durations, bytes.

use std::fmt::Write as _;

/// `metav1.Time` / `metav1.MicroTime` in JSON: UTC RFC 3339, `2024-01-02T03:04:05Z`, with
/// `micros` six fractional digits (`2024-01-02T03:04:05.000006Z`). `None` for years outside
/// 0..=9999, which Go refuses to marshal.
pub(super) fn rfc3339(seconds: i64, nanos: i32, micros: bool) -> Option<String> {
    // Normalize nanos into 0..1e9 the way Go's time.Unix does.
    let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    let secs = i64::try_from(total.div_euclid(1_000_000_000)).ok()?;
    let nanos = total.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let mut out = format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}");
    if micros {
        let _ = write!(out, ".{:06}", nanos / 1000);
    }
    out.push('Z');
    Some(out)
}

/// Proleptic Gregorian (year, month, day) of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Go's `time.Duration.String()`: `1h0m0s`, `1.5s`, `300ms`, `2µs`, `0s`, `-1m30s`.
pub(super) fn go_duration(nanos: i64) -> String {
    let mut u = nanos.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0 => return "0s".to_string(),
            1..=999 => (0, "ns"),
            1_000..=999_999 => (3, "µs"),
            _ => (6, "ms"),
        };
        let frac = fraction(&mut u, prec);
        let _ = write!(out, "{u}{frac}{unit}");
    } else {
        let frac = fraction(&mut u, 9);
        let (secs, mins) = (u % 60, u / 60);
        if mins > 0 {
            let (mins, hours) = (mins % 60, mins / 60);
            if hours > 0 {
                let _ = write!(out, "{hours}h");
            }
            let _ = write!(out, "{mins}m");
        }
        let _ = write!(out, "{secs}{frac}s");
    }
    if nanos < 0 {
        out.insert(0, '-');
    }
    out
}

/// Go's `fmtFrac`: splits `v` into `v / 10^prec` (left in `v`) and the fraction `.ddd` with
/// trailing zeros removed (empty when zero).
fn fraction(v: &mut u64, prec: u32) -> String {
    let scale = 10u64.pow(prec);
    let frac = *v % scale;
    *v /= scale;
    if frac == 0 {
        return String::new();
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    format!(".{}", digits.trim_end_matches('0'))
}

/// Standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0, 0, false).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(rfc3339(1_704_164_645, 0, false).as_deref(), Some("2024-01-02T03:04:05Z"));
        // Time drops fractions, MicroTime truncates to microseconds.
        assert_eq!(rfc3339(1_704_164_645, 999_999_999, false).as_deref(), Some("2024-01-02T03:04:05Z"));
        assert_eq!(rfc3339(1_704_164_645, 123_456_789, true).as_deref(), Some("2024-01-02T03:04:05.123456Z"));
        assert_eq!(rfc3339(951_782_400, 0, false).as_deref(), Some("2000-02-29T00:00:00Z"));
        assert_eq!(rfc3339(-1, 0, false).as_deref(), Some("1969-12-31T23:59:59Z"));
        assert_eq!(rfc3339(-62_135_596_800, 0, false).as_deref(), Some("0001-01-01T00:00:00Z"));
        assert_eq!(rfc3339(253_402_300_800, 0, false), None);
    }

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (5_430_000_000_000, "1h30m30s"),
            (-90_000_000_000, "-1m30s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(go_duration(nanos), want, "{nanos}");
        }
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"v"), "dg==");
        assert_eq!(base64(b"va"), "dmE=");
        assert_eq!(base64(b"val"), "dmFs");
        assert_eq!(base64(&[0xff, 0xfe, 0x00, 0x01]), "//4AAQ==");
    }
}
