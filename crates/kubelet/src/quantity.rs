//! Parsing resource quantities (`100m`, `1.5`, `128Mi`, `1e3`) into numbers.

/// The value of a quantity in thousandths (`100m` -> 100, `2` -> 2000), rounded up.
pub(crate) fn milli(q: &str) -> Option<i128> {
    let (num, mult_num, mult_den) = split(q)?;
    let scaled = num.checked_mul(1000)?.checked_mul(mult_num)?;
    Some(div_ceil(scaled, mult_den))
}

/// The value of a quantity in units (`128Mi` -> 134217728, `100m` -> 1), rounded up.
pub(crate) fn units(q: &str) -> Option<i128> {
    let (num, mult_num, mult_den) = split(q)?;
    Some(div_ceil(num.checked_mul(mult_num)?, mult_den))
}

fn div_ceil(a: i128, b: i128) -> i128 {
    if a >= 0 {
        (a + b - 1) / b
    } else {
        a / b
    }
}

/// A quantity as `mantissa * num / den` with the mantissa's decimals folded into `den`.
fn split(q: &str) -> Option<(i128, i128, i128)> {
    let q = q.trim();
    let digits_end =
        q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(digits_end);
    if number.is_empty() {
        return None;
    }
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let mantissa: i128 = format!("{int}{frac}").parse().ok()?;
    let mut den: i128 = 10i128.checked_pow(frac.len() as u32)?;
    let mut num: i128 = 1;
    let pow = |b: i128, e: u32| b.checked_pow(e);
    match suffix {
        "" => {}
        "n" => den = den.checked_mul(1_000_000_000)?,
        "u" => den = den.checked_mul(1_000_000)?,
        "m" => den = den.checked_mul(1000)?,
        "k" => num = 1000,
        "M" => num = pow(10, 6)?,
        "G" => num = pow(10, 9)?,
        "T" => num = pow(10, 12)?,
        "P" => num = pow(10, 15)?,
        "E" => num = pow(10, 18)?,
        "Ki" => num = 1 << 10,
        "Mi" => num = 1 << 20,
        "Gi" => num = 1 << 30,
        "Ti" => num = 1 << 40,
        "Pi" => num = 1 << 50,
        "Ei" => num = 1 << 60,
        s if s.starts_with(['e', 'E']) => {
            let e: i32 = s[1..].parse().ok()?;
            if e >= 0 {
                num = pow(10, e as u32)?;
            } else {
                den = den.checked_mul(pow(10, e.unsigned_abs())?)?;
            }
        }
        _ => return None,
    }
    Some((mantissa, num, den))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
