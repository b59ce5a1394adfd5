//! Resource quantities (`100m`, `1.5`, `128Mi`, `1e3`): exact parsing of every form the API
//! accepts, arithmetic, comparison, and the canonical form kube-apiserver writes them back in.
//!
//! A [`Quantity`] holds its value exactly in nano-units (10^-9, the finest precision Kubernetes
//! keeps; finer values round up, as upstream's `resource.Quantity` does) together with the
//! [`Format`] of the suffix it was written with, which decides how it is printed:
//! `1500m`, `2`, `1Gi`, `1536Mi`, `1e3`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Nano-units per unit.
const NANO: i128 = 1_000_000_000;

/// How a quantity is printed, from the suffix it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// Powers of ten with SI suffixes (`m`, `k`, `M`, ...) or none.
    #[default]
    DecimalSi,
    /// Powers of 1024 (`Ki`, `Mi`, `Gi`, ...).
    BinarySi,
    /// Powers of ten as an exponent (`1e3`).
    DecimalExponent,
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string does not match the quantity grammar.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    /// The value is too large to hold.
    #[error("quantity is too large")]
    TooLarge,
}

/// A resource quantity: an exact value and the format it prints in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::hash::Hash for Quantity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

/// `a / b` rounded away from zero (`b > 0`).
fn div_up(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b == 0 {
        q
    } else if a > 0 {
        q + 1
    } else {
        q - 1
    }
}

impl Quantity {
    /// Zero, printed as `0`.
    pub const ZERO: Quantity = Quantity { nanos: 0, format: Format::DecimalSi };

    /// A quantity of `n` units in `format`.
    pub fn from_units(n: i64, format: Format) -> Quantity {
        Quantity { nanos: i128::from(n) * NANO, format }
    }

    /// A quantity of `n` thousandths (decimal).
    pub fn from_milli(n: i64) -> Quantity {
        Quantity { nanos: i128::from(n) * 1_000_000, format: Format::DecimalSi }
    }

    /// The exact value in nano-units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The format this quantity prints in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The value in units, rounded away from zero (`Quantity.Value()`).
    pub fn value(&self) -> i128 {
        div_up(self.nanos, NANO)
    }

    /// The value in thousandths, rounded away from zero (`Quantity.MilliValue()`).
    pub fn milli_value(&self) -> i128 {
        div_up(self.nanos, 1_000_000)
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// `self + other`, in `self`'s format (the other's when `self` is zero, as upstream);
    /// `None` on overflow.
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        let format = if self.nanos == 0 { other.format } else { self.format };
        Some(Quantity { nanos: self.nanos.checked_add(other.nanos)?, format })
    }

    /// `self - other`, in `self`'s format (the other's when `self` is zero); `None` on overflow.
    pub fn checked_sub(&self, other: &Quantity) -> Option<Quantity> {
        let format = if self.nanos == 0 { other.format } else { self.format };
        Some(Quantity { nanos: self.nanos.checked_sub(other.nanos)?, format })
    }

    /// `self + other`, saturating at the limits of the representation.
    pub fn saturating_add(&self, other: &Quantity) -> Quantity {
        let format = if self.nanos == 0 { other.format } else { self.format };
        Quantity { nanos: self.nanos.saturating_add(other.nanos), format }
    }

    /// `self - other`, saturating at the limits of the representation.
    pub fn saturating_sub(&self, other: &Quantity) -> Quantity {
        let format = if self.nanos == 0 { other.format } else { self.format };
        Quantity { nanos: self.nanos.saturating_sub(other.nanos), format }
    }

    /// `self * n` in `self`'s format, saturating.
    pub fn saturating_mul(&self, n: i64) -> Quantity {
        Quantity { nanos: self.nanos.saturating_mul(i128::from(n)), format: self.format }
    }

    /// The same value printed in `format`.
    pub fn with_format(self, format: Format) -> Quantity {
        Quantity { format, ..self }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Parses `s` exactly (`resource.ParseQuantity`); values finer than 1n round up.
pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
    let s = s.trim();
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(QuantityError::Format);
    }
    // Leading zeros and trailing fractional zeros carry no value; dropping them keeps long
    // spellings of small numbers within range.
    let whole = whole.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let digits = format!("{whole}{frac}");
    let mantissa: i128 =
        if digits.is_empty() { 0 } else { digits.parse().map_err(|_| QuantityError::TooLarge)? };
    let frac_len = i32::try_from(frac.len()).map_err(|_| QuantityError::TooLarge)?;
    // value = mantissa * 10^(exp10 - frac_len) * 1024^exp1024
    let (format, exp10, exp1024): (Format, i32, u32) = match suffix {
        "" => (Format::DecimalSi, 0, 0),
        "n" => (Format::DecimalSi, -9, 0),
        "u" => (Format::DecimalSi, -6, 0),
        "m" => (Format::DecimalSi, -3, 0),
        "k" => (Format::DecimalSi, 3, 0),
        "M" => (Format::DecimalSi, 6, 0),
        "G" => (Format::DecimalSi, 9, 0),
        "T" => (Format::DecimalSi, 12, 0),
        "P" => (Format::DecimalSi, 15, 0),
        "E" => (Format::DecimalSi, 18, 0),
        "Ki" => (Format::BinarySi, 0, 1),
        "Mi" => (Format::BinarySi, 0, 2),
        "Gi" => (Format::BinarySi, 0, 3),
        "Ti" => (Format::BinarySi, 0, 4),
        "Pi" => (Format::BinarySi, 0, 5),
        "Ei" => (Format::BinarySi, 0, 6),
        exp => {
            let e = exp.strip_prefix(['e', 'E']).ok_or(QuantityError::Format)?;
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Format);
            }
            let e: i32 = e.parse().map_err(|_| QuantityError::TooLarge)?;
            (Format::DecimalExponent, e, 0)
        }
    };
    let scaled = mantissa.checked_mul(1i128 << (10 * exp1024)).ok_or(QuantityError::TooLarge)?;
    // Nano-units: times 10^(exp10 - frac_len + 9).
    let shift = exp10.saturating_sub(frac_len).saturating_add(9);
    let nanos = if mantissa == 0 {
        0
    } else if shift >= 0 {
        let p = 10i128.checked_pow(shift.unsigned_abs()).ok_or(QuantityError::TooLarge)?;
        scaled.checked_mul(p).ok_or(QuantityError::TooLarge)?
    } else {
        match 10i128.checked_pow(shift.unsigned_abs()) {
            Some(p) => div_up(scaled, p),
            // Far below a nano-unit: rounds up to one.
            None => 1,
        }
    };
    Ok(Quantity { nanos: if negative { -nanos } else { nanos }, format })
}

impl fmt::Display for Quantity {
    /// The canonical form (`Quantity.String()`): `100m`, `1500m`, `2`, `2k`, `1Gi`, `1536Mi`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let mut format = self.format;
        if format == Format::BinarySi && (self.nanos.abs() < 1024 * NANO || self.nanos % NANO != 0) {
            // Small or fractional binary quantities print in decimal (no rounding).
            format = Format::DecimalSi;
        }
        if format == Format::BinarySi {
            let mut units = self.nanos / NANO;
            let mut exp = 0;
            while exp < 6 && units % 1024 == 0 {
                units /= 1024;
                exp += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
            return write!(f, "{units}{suffix}");
        }
        let mut mantissa = self.nanos;
        let mut exp: i32 = -9;
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exp += 1;
        }
        match exp.rem_euclid(3) {
            1 => {
                mantissa *= 10;
                exp -= 1;
            }
            2 => {
                mantissa *= 100;
                exp -= 2;
            }
            _ => {}
        }
        let suffix = match (format, exp) {
            (_, 0) => String::new(),
            (Format::DecimalSi, -9) => "n".into(),
            (Format::DecimalSi, -6) => "u".into(),
            (Format::DecimalSi, -3) => "m".into(),
            (Format::DecimalSi, 3) => "k".into(),
            (Format::DecimalSi, 6) => "M".into(),
            (Format::DecimalSi, 9) => "G".into(),
            (Format::DecimalSi, 12) => "T".into(),
            (Format::DecimalSi, 15) => "P".into(),
            (Format::DecimalSi, 18) => "E".into(),
            (_, e) => format!("e{e}"),
        };
        write!(f, "{mantissa}{suffix}")
    }
}

/// The value of quantity `q` in thousandths (`100m` -> 100, `2` -> 2000), rounded up;
/// `None` when `q` is not a quantity.
pub fn milli(q: &str) -> Option<i128> {
    parse(q).ok().map(|q| q.milli_value())
}

/// The value of quantity `q` in units (`128Mi` -> 134217728, `100m` -> 1), rounded up;
/// `None` when `q` is not a quantity.
pub fn units(q: &str) -> Option<i128> {
    parse(q).ok().map(|q| q.value())
}

/// The canonical form of quantity `q` (`"0.1"` -> `"100m"`); `None` when it is not one.
pub fn canonical(q: &str) -> Option<String> {
    parse(q).ok().map(|q| q.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn cpu_and_memory_quantities_parse_like_the_api_server_writes_them() {
        assert_eq!(milli("100m"), Some(100));
        assert_eq!(milli("1.5"), Some(1500));
        assert_eq!(milli("2"), Some(2000));
        assert_eq!(units("128Mi"), Some(128 << 20));
        assert_eq!(units("1G"), Some(1_000_000_000));
        assert_eq!(units("1e3"), Some(1000));
        assert_eq!(units("100m"), Some(1));
        assert_eq!(units("1.5Gi"), Some(3 << 29));
        assert_eq!(units("abc"), None);
        assert_eq!(units("12Zi"), None);
    }

    #[test]
    fn decimal_binary_and_exponent_suffixes_scale_to_milli_units() {
        assert_eq!(milli("1"), Some(1000));
        assert_eq!(milli("250m"), Some(250));
        assert_eq!(milli("0.5"), Some(500));
        assert_eq!(milli("1Ki"), Some(1_024_000));
        assert_eq!(milli("1Gi"), Some(1_073_741_824_000));
        assert_eq!(milli("2k"), Some(2_000_000));
        assert_eq!(milli("1e3"), Some(1_000_000));
        assert_eq!(milli("1E-3"), Some(1));
        assert_eq!(milli("1.5Gi"), Some(1_610_612_736_000));
        assert_eq!(milli("-2"), Some(-2000));
        assert_eq!(milli(".5"), Some(500));
        assert_eq!(milli("5."), Some(5000));
    }

    #[test]
    fn fractions_of_a_milli_unit_round_up() {
        assert_eq!(milli("1n"), Some(1));
        assert_eq!(milli("0.0001"), Some(1));
        assert_eq!(q("0.0000000001").nanos(), 1);
    }

    #[test]
    fn garbage_is_not_a_quantity() {
        for bad in ["", "abc", "1Zi", "1.2.3", "1e", "1e+", "--1", "1 Gi", "Mi"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn quantities_print_in_upstream_canonical_form() {
        let cases = [
            ("100m", "100m"),
            ("0.1", "100m"),
            ("1.5", "1500m"),
            ("2", "2"),
            ("2000", "2k"),
            ("1500", "1500"),
            ("10000", "10k"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("500Mi", "500Mi"),
            ("512", "512"),
            ("1Ki", "1Ki"),
            ("0.5Ki", "512"),
            ("1e3", "1e3"),
            ("1E6", "1e6"),
            ("0", "0"),
            ("0Mi", "0"),
            ("1000m", "1"),
            ("1G", "1G"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("-100m", "-100m"),
            ("00100", "100"),
        ];
        for (input, want) in cases {
            assert_eq!(q(input).to_string(), want, "canonical form of {input}");
        }
    }

    #[test]
    fn arithmetic_keeps_the_format_of_the_first_non_zero_operand() {
        let sum = Quantity::ZERO.checked_add(&q("128Mi")).and_then(|s| s.checked_add(&q("128Mi")));
        assert_eq!(sum.map(|s| s.to_string()).as_deref(), Some("256Mi"));
        let cpu = q("500m").checked_add(&q("1.5")).map(|s| s.to_string());
        assert_eq!(cpu.as_deref(), Some("2"));
        assert_eq!(q("1").checked_sub(&q("250m")).map(|s| s.to_string()).as_deref(), Some("750m"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1Gi").saturating_mul(3).to_string(), "3Gi");
    }
}
