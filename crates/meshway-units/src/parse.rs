//! Exact decimal parsing of "<number><unit>" strings.

use thiserror::Error;

/// A human unit string that could not be parsed. Every variant quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnitError {
    #[error("invalid {what} {input:?}: expected a number followed by a unit ({units})")]
    Malformed { what: &'static str, input: String, units: &'static str },
    #[error("invalid {what} {input:?}: unknown unit {unit:?}, expected one of {units}")]
    UnknownUnit { what: &'static str, input: String, unit: String, units: &'static str },
    #[error("invalid {what} {input:?}: value is too large")]
    Overflow { what: &'static str, input: String },
    #[error("invalid {what} {input:?}: not a whole number of {base}")]
    Fraction { what: &'static str, input: String, base: &'static str },
    #[error("invalid {what} {input:?}: must not be negative")]
    Negative { what: &'static str, input: String },
    /// A value whose form is not a number and a unit (a ratio).
    #[error("invalid {what} {input:?}: expected {expected}")]
    Expected { what: &'static str, input: String, expected: &'static str },
}

/// What is being parsed: used in messages.
pub(crate) struct Kind {
    pub what: &'static str,
    pub base: &'static str,
    /// Accepted suffixes with their factor in base units. Matched exactly first, then
    /// case-insensitively where `case_insensitive` allows.
    pub units: &'static [(&'static str, u128)],
    /// Human list of accepted units for messages.
    pub list: &'static str,
    /// A unit people commonly write for this kind, for examples in messages.
    pub example: &'static str,
    /// The factor for a bare number (no unit), if one is accepted.
    pub bare: Option<u128>,
    pub case_insensitive: bool,
}

/// Splits `s` into a decimal number (mantissa, fraction digits) and a unit suffix.
fn split_number(s: &str) -> Option<(u128, u32, &str, bool)> {
    let mut mantissa: u128 = 0;
    let mut frac_digits: u32 = 0;
    let mut seen_digit = false;
    let mut seen_dot = false;
    let mut end = 0;
    let mut overflow = false;
    for (i, c) in s.char_indices() {
        match c {
            '0'..='9' => {
                seen_digit = true;
                match mantissa.checked_mul(10).and_then(|m| m.checked_add(u128::from(c as u8 - b'0'))) {
                    Some(m) => mantissa = m,
                    None => overflow = true,
                }
                if seen_dot {
                    frac_digits += 1;
                }
            }
            '_' if seen_digit => {}
            '.' if !seen_dot => seen_dot = true,
            _ => {
                end = i;
                break;
            }
        }
        end = i + c.len_utf8();
    }
    if !seen_digit {
        return None;
    }
    // Scientific notation: "1e3s", "2.5E-3s" ("1EB" stays exabytes: an exponent needs a
    // digit after the e and its sign). "1e308s" read as an unknown unit "e308s".
    let rest = &s[end..];
    if let Some(exp) = rest.strip_prefix(['e', 'E']) {
        let (neg, digits) = match exp.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, exp.strip_prefix('+').unwrap_or(exp)),
        };
        let n = digits.bytes().take_while(u8::is_ascii_digit).count();
        if n > 0 {
            let after = &digits[n..];
            let e: u32 = digits[..n].parse().unwrap_or(u32::MAX).min(10_000);
            if neg {
                frac_digits = frac_digits.saturating_add(e);
            } else if e <= frac_digits {
                frac_digits -= e;
            } else {
                match 10u128.checked_pow(e - frac_digits).and_then(|f| mantissa.checked_mul(f)) {
                    Some(m) => mantissa = m,
                    None => overflow = mantissa != 0,
                }
                frac_digits = 0;
            }
            return Some((mantissa, frac_digits, after.trim(), overflow));
        }
    }
    Some((mantissa, frac_digits, rest.trim(), overflow))
}

/// Parses `input` as a quantity of `kind`, returning base units.
pub(crate) fn parse(input: &str, kind: &Kind) -> Result<u64, UnitError> {
    let s = input.trim();
    let malformed = || UnitError::Malformed { what: kind.what, input: input.to_string(), units: kind.list };
    if s.starts_with('-') {
        return Err(UnitError::Negative { what: kind.what, input: input.to_string() });
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let (mantissa, frac_digits, unit, overflow) = split_number(s).ok_or_else(malformed)?;
    let factor = if unit.is_empty() {
        // 0 is 0 in every unit.
        if mantissa == 0 && !overflow {
            return Ok(0);
        }
        kind.bare.ok_or_else(malformed)?
    } else {
        let exact = kind.units.iter().find(|(u, _)| *u == unit);
        // Case is forgiven ("100KM", "1US"), but not where it spells another SI unit: "Mm" is
        // megametres and "Ms" megaseconds, and "0.1Mm" was read as 0.1 mm.
        let mega = unit.len() == 2 && unit.starts_with('M') && unit.ends_with(['m', 's']);
        let found = exact.or_else(|| {
            if kind.case_insensitive && !mega {
                kind.units.iter().find(|(u, _)| u.eq_ignore_ascii_case(unit))
            } else {
                None
            }
        });
        match found {
            Some((_, f)) => *f,
            None => {
                return Err(UnitError::UnknownUnit {
                    what: kind.what,
                    input: input.to_string(),
                    unit: unit.to_string(),
                    units: kind.list,
                })
            }
        }
    };
    let too_big = || UnitError::Overflow { what: kind.what, input: input.to_string() };
    if overflow {
        return Err(too_big());
    }
    if frac_digits > 38 {
        // Past what 10^n holds in 128 bits: 0, or a fraction of the base unit.
        return if mantissa == 0 {
            Ok(0)
        } else {
            Err(UnitError::Fraction { what: kind.what, input: input.to_string(), base: kind.base })
        };
    }
    let scaled = mantissa.checked_mul(factor).ok_or_else(too_big)?;
    let div = 10u128.pow(frac_digits);
    if scaled % div != 0 {
        return Err(UnitError::Fraction { what: kind.what, input: input.to_string(), base: kind.base });
    }
    u64::try_from(scaled / div).map_err(|_| too_big())
}

/// Formats `value` base units as the largest unit in `units` (ascending factors) that keeps
/// the number at least 1, with up to `max_decimals` decimals, trailing zeros trimmed.
pub(crate) fn format(value: u64, units: &[(&str, u128)], max_decimals: u32) -> String {
    let v = u128::from(value);
    let (name, factor) = units.iter().rev().find(|(_, f)| v >= *f).filter(|_| v > 0).copied().unwrap_or(units[0]);
    let scale = 10u128.pow(max_decimals);
    // Round half up to max_decimals.
    let scaled = (v * scale + factor / 2) / factor;
    let int = scaled / scale;
    let frac = scaled % scale;
    if frac == 0 {
        format!("{int}{name}")
    } else {
        let mut f = format!("{frac:0width$}", width = max_decimals as usize);
        while f.ends_with('0') {
            f.pop();
        }
        format!("{int}.{f}{name}")
    }
}
