//! Unit newtypes for meshway: one type per unit, integer arithmetic, human parsing.
//!
//! | type | base unit | parses |
//! |---|---|---|
//! | [`Bytes`] | byte | `"4096"`, `"64MB"`, `"1GiB"`, `"1.5KiB"` |
//! | [`BitsPerSec`] | bit per second | `"400Gbps"`, `"1.6Tbps"`, `"900GBps"` (bytes per second) |
//! | [`Nanos`] | nanosecond (a span) | `"800ns"`, `"2us"`, `"1.5ms"`, `"3s"` |
//! | [`SimTime`] | nanosecond (a point) | same as [`Nanos`] |
//! | [`Meters`] | millimetre | `"3m"`, `"1.5m"`, `"100km"` |
//! | [`Ratio`] | – | `"1:1"`, `"3:1"`, `"1.5:1"` |
//!
//! Parsing is exact: a decimal number is scaled in integer arithmetic and must come out as a
//! whole number of the base unit (so `"0.5B"` is an error, not a rounded value). Values that do
//! not fit in 64 bits are errors. Every error quotes the input.
//!
//! Serde: each type deserializes from a human string or from a bare integer in its base unit,
//! and serializes as the bare integer (output field names carry the unit: `size_bytes`).
//! Files people write are read inside [`units_required`], where a bare number other than 0 is
//! refused for a duration, rate or length (a size's bare number is bytes).

pub mod files;
mod parse;
mod types;

pub use parse::UnitError;
pub use types::{units_required, BitsPerSec, Bytes, Meters, Nanos, Ratio, SimTime};

/// Why `text` cannot be a name printed in a report: its first control character (an escape
/// sequence or a NUL acts on a terminal) or bidirectional control (U+202E reverses the rest
/// of the line: "190.8ms" read "sm8.091"), described.
pub fn unprintable(text: &str) -> Option<String> {
    text.chars().find_map(|c| match c {
        c if c.is_control() => Some(format!("the control character {c:?}")),
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}' => {
            Some(format!("the bidirectional control U+{:04X}", u32::from(c)))
        }
        _ => None,
    })
}
/// A number as an error message quotes it: as written from 1e-4 to 1e12 (and 0), else in
/// exponent form ("1e300", not 301 digits; "1e-300", not 300 zeros).
pub fn shown(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || !a.is_finite() || (1e-4..1e12).contains(&a) {
        v.to_string()
    } else {
        format!("{v:e}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shown_numbers_stay_short() {
        use super::shown;
        assert_eq!(shown(0.0), "0");
        assert_eq!(shown(-0.5), "-0.5");
        assert_eq!(shown(5.25), "5.25");
        assert_eq!(shown(1e300), "1e300");
        assert_eq!(shown(-2.5e-300), "-2.5e-300");
        assert_eq!(shown(123456789.0), "123456789");
        assert_eq!(shown(f64::NAN), "NaN");
    }
}
