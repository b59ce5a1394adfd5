//! Resource quantities (`500m`, `1Gi`, `2e3`) as integer milli-units, the unit every
//! comparison of requests against allocatable uses.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The value of `q` in thousandths (`"1"` -> 1000, `"250m"` -> 250, `"1Ki"` -> 1_024_000),
/// rounded up like `Quantity.MilliValue()`; `None` when `q` is not a quantity.
pub fn milli(q: &Quantity) -> Option<i128> {
    parse_milli(q.0.trim())
}

fn parse_milli(s: &str) -> Option<i128> {
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let number_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let digits: i128 = format!("{whole}{frac}").parse().ok()?;
    let frac_len = u32::try_from(frac.len()).ok()?;
    // value = digits / 10^frac_len * num / den, then times 1000 for milli-units.
    let (num, den): (i128, i128) = match suffix {
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        "n" => (1, 1_000_000_000),
        "u" => (1, 1_000_000),
        "m" => (1, 1_000),
        "" => (1, 1),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        exp => {
            let e: i32 = exp.strip_prefix(['e', 'E'])?.parse().ok()?;
            let p = 10i128.checked_pow(e.unsigned_abs())?;
            if e >= 0 {
                (p, 1)
            } else {
                (1, p)
            }
        }
    };
    let top = digits.checked_mul(num)?.checked_mul(1000)?;
    let bottom = 10i128.checked_pow(frac_len)?.checked_mul(den)?;
    let value = (top + bottom - 1) / bottom;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Option<i128> {
        milli(&Quantity(s.to_string()))
    }

    #[test]
    fn decimal_binary_and_exponent_suffixes_scale_to_milli_units() {
        assert_eq!(m("1"), Some(1000));
        assert_eq!(m("250m"), Some(250));
        assert_eq!(m("0.5"), Some(500));
        assert_eq!(m("1Ki"), Some(1_024_000));
        assert_eq!(m("1Gi"), Some(1_073_741_824_000));
        assert_eq!(m("2k"), Some(2_000_000));
        assert_eq!(m("1e3"), Some(1_000_000));
        assert_eq!(m("1.5Gi"), Some(1_610_612_736_000));
        assert_eq!(m("-2"), Some(-2000));
    }

    #[test]
    fn fractions_of_a_milli_unit_round_up() {
        assert_eq!(m("1n"), Some(1));
        assert_eq!(m("0.0001"), Some(1));
    }

    #[test]
    fn garbage_is_not_a_quantity() {
        assert_eq!(m(""), None);
        assert_eq!(m("abc"), None);
        assert_eq!(m("1Zi"), None);
    }
}
