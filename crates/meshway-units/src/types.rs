//! The unit newtypes and the physics that lives on them.

use crate::parse::{format, parse, Kind, UnitError};
use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::str::FromStr;

const BYTE_UNITS: &[(&str, u128)] = &[
    ("B", 1),
    ("KB", 1_000),
    ("kB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("PB", 1_000_000_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("PiB", 1 << 50),
];
const BYTE_DISPLAY: &[(&str, u128)] =
    &[("B", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40), ("PiB", 1 << 50)];
const BYTE_DISPLAY_SI: &[(&str, u128)] = &[
    ("B", 1),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("PB", 1_000_000_000_000_000),
];

const RATE_UNITS: &[(&str, u128)] = &[
    ("bps", 1),
    ("kbps", 1_000),
    ("Kbps", 1_000),
    ("Mbps", 1_000_000),
    ("Gbps", 1_000_000_000),
    ("Tbps", 1_000_000_000_000),
    ("Pbps", 1_000_000_000_000_000),
    ("Bps", 8),
    ("KBps", 8_000),
    ("MBps", 8_000_000),
    ("GBps", 8_000_000_000),
    ("TBps", 8_000_000_000_000),
    ("B/s", 8),
    ("KB/s", 8_000),
    ("MB/s", 8_000_000),
    ("GB/s", 8_000_000_000),
    ("TB/s", 8_000_000_000_000),
    ("b/s", 1),
    ("kb/s", 1_000),
    ("Mb/s", 1_000_000),
    ("Gb/s", 1_000_000_000),
    ("Tb/s", 1_000_000_000_000),
];
const RATE_DISPLAY: &[(&str, u128)] =
    &[("bps", 1), ("kbps", 1_000), ("Mbps", 1_000_000), ("Gbps", 1_000_000_000), ("Tbps", 1_000_000_000_000)];

const TIME_UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("min", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];
const TIME_DISPLAY: &[(&str, u128)] = &[("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000)];

const LENGTH_UNITS: &[(&str, u128)] = &[("mm", 1), ("cm", 10), ("m", 1_000), ("km", 1_000_000)];
const LENGTH_DISPLAY: &[(&str, u128)] = &[("m", 1_000), ("km", 1_000_000)];

const BYTES_KIND: Kind = Kind {
    what: "size",
    base: "bytes",
    units: BYTE_UNITS,
    list: "B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB",
    example: "B",
    bare: Some(1),
    case_insensitive: false,
};
const RATE_KIND: Kind = Kind {
    what: "rate",
    base: "bits per second",
    units: RATE_UNITS,
    list: "bps, kbps, Mbps, Gbps, Tbps, or bytes per second as MBps, GBps, GB/s",
    example: "Gbps",
    bare: None,
    case_insensitive: false,
};
const TIME_KIND: Kind = Kind {
    what: "duration",
    base: "nanoseconds",
    units: TIME_UNITS,
    list: "ns, us, ms, s, min, h",
    example: "ms",
    bare: None,
    case_insensitive: true,
};
const LENGTH_KIND: Kind = Kind {
    what: "length",
    base: "millimetres",
    units: LENGTH_UNITS,
    list: "mm, cm, m, km",
    example: "km",
    bare: None,
    case_insensitive: true,
};

thread_local! {
    static UNITS_REQUIRED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with bare numbers refused for durations, rates and lengths: a file a person
/// wrote says `latency = 50` meaning 50 of something, and which unit is a guess (it would be
/// read as 50ns; `distance = 100` as 100mm). Sizes keep bare numbers (bytes, as in strings)
/// and 0 is 0 in every unit. Outside `f` a bare number is the base unit, as meshway's own JSON
/// output writes it.
pub fn units_required<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            UNITS_REQUIRED.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(UNITS_REQUIRED.with(|c| c.replace(true)));
    f()
}

/// Inside [`units_required`], a value is written with its base unit ("300ns") so that what
/// it writes there (the built-in catalog under a user's overlay) reads back.
fn human_base(v: u64, kind: &Kind) -> Option<String> {
    (kind.bare.is_none() && UNITS_REQUIRED.with(|c| c.get())).then(|| format!("{v}{}", kind.units[0].0))
}

/// A bare number as a quantity of `kind`: its base unit, unless [`units_required`] is in force.
fn bare_number(v: u64, kind: &Kind) -> Result<u64, String> {
    if v == 0 || kind.bare.is_some() || !UNITS_REQUIRED.with(|c| c.get()) {
        return Ok(v);
    }
    Err(format!(
        "invalid {} {v}: a number needs a unit, as in \"{v}{}\" (units: {})",
        kind.what, kind.example, kind.list
    ))
}

/// Implements FromStr, Display, serde (string or integer in; integer out) for a newtype.
macro_rules! unit_type {
    ($ty:ident, $kind:expr, $display:expr, $decimals:expr) => {
        impl FromStr for $ty {
            type Err = UnitError;
            fn from_str(s: &str) -> Result<Self, UnitError> {
                parse(s, &$kind).map($ty)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&format(self.0, $display, $decimals))
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match human_base(self.0, &$kind) {
                    Some(text) => s.serialize_str(&text),
                    None => s.serialize_u64(self.0),
                }
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a {} such as {:?}", $kind.what, format(1, $display, 0))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$ty, E> {
                        bare_number(v, &$kind).map($ty).map_err(E::custom)
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$ty, E> {
                        let v = u64::try_from(v)
                            .map_err(|_| E::custom(format!("invalid {} {v}: must not be negative", $kind.what)))?;
                        self.visit_u64(v)
                    }
                }
                d.deserialize_any(V)
            }
        }
        impl Add for $ty {
            type Output = $ty;
            fn add(self, o: $ty) -> $ty {
                $ty(self.0.saturating_add(o.0))
            }
        }
        impl AddAssign for $ty {
            fn add_assign(&mut self, o: $ty) {
                self.0 = self.0.saturating_add(o.0);
            }
        }
        impl std::iter::Sum for $ty {
            fn sum<I: Iterator<Item = $ty>>(it: I) -> $ty {
                it.fold($ty(0), |a, b| a + b)
            }
        }
    };
}

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub u64);
unit_type!(Bytes, BYTES_KIND, BYTE_DISPLAY, 2);

impl Bytes {
    pub const fn new(b: u64) -> Self {
        Bytes(b)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
    /// Formats with decimal (SI) prefixes: "64MB" rather than "61.04MiB".
    pub fn display_si(self) -> String {
        format(self.0, BYTE_DISPLAY_SI, 2)
    }
    pub fn saturating_sub(self, o: Bytes) -> Bytes {
        Bytes(self.0.saturating_sub(o.0))
    }
}

/// A data rate in bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BitsPerSec(pub u64);
unit_type!(BitsPerSec, RATE_KIND, RATE_DISPLAY, 3);

impl BitsPerSec {
    pub const fn gbps(g: u64) -> Self {
        BitsPerSec(g * 1_000_000_000)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
    /// Time to put `size` on the wire at this rate, rounded up to the next nanosecond.
    /// A zero rate gives `Nanos::MAX`.
    pub fn transmit_time(self, size: Bytes) -> Nanos {
        if self.0 == 0 {
            return Nanos::MAX;
        }
        let bits = u128::from(size.0) * 8 * 1_000_000_000;
        let ns = bits.div_ceil(u128::from(self.0));
        Nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
    /// Bytes carried in `span` at this rate, rounded down.
    pub fn bytes_in(self, span: Nanos) -> Bytes {
        let b = u128::from(self.0) * u128::from(span.0) / 8 / 1_000_000_000;
        Bytes(u64::try_from(b).unwrap_or(u64::MAX))
    }
    /// This rate multiplied by `n`, saturating.
    pub fn times(self, n: u64) -> BitsPerSec {
        BitsPerSec(self.0.saturating_mul(n))
    }
    /// Gigabits per second as a float, for display and ratios.
    pub fn as_gbps_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

/// A span of time in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(pub u64);
unit_type!(Nanos, TIME_KIND, TIME_DISPLAY, 3);

impl Nanos {
    pub const MAX: Nanos = Nanos(u64::MAX);
    pub const ZERO: Nanos = Nanos(0);
    pub const fn from_micros(us: u64) -> Self {
        Nanos(us * 1_000)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
    pub fn saturating_sub(self, o: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(o.0))
    }
    /// This span times `n`, saturating.
    pub fn times(self, n: u64) -> Nanos {
        Nanos(self.0.saturating_mul(n))
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

/// A point in simulated time, in nanoseconds since the start of the run.
/// `SimTime - SimTime = Nanos` and `SimTime + Nanos = SimTime`; two points cannot be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SimTime(pub u64);

impl SimTime {
    pub const ZERO: SimTime = SimTime(0);
    pub const fn get(self) -> u64 {
        self.0
    }
    /// The span since `earlier`, zero if `earlier` is later.
    pub fn since(self, earlier: SimTime) -> Nanos {
        Nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Nanos> for SimTime {
    type Output = SimTime;
    fn add(self, n: Nanos) -> SimTime {
        SimTime(self.0.saturating_add(n.0))
    }
}
impl Sub for SimTime {
    type Output = Nanos;
    fn sub(self, o: SimTime) -> Nanos {
        self.since(o)
    }
}
impl FromStr for SimTime {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        s.parse::<Nanos>().map(|n| SimTime(n.0))
    }
}
impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Nanos(self.0), f)
    }
}
impl serde::Serialize for SimTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Nanos(self.0).serialize(s)
    }
}
impl<'de> serde::Deserialize<'de> for SimTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Nanos::deserialize(d).map(|n| SimTime(n.0))
    }
}

/// A length, stored in millimetres so "1.5m" cables are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Meters(pub u64);
unit_type!(Meters, LENGTH_KIND, LENGTH_DISPLAY, 3);

impl Meters {
    pub const fn from_m(m: u64) -> Self {
        Meters(m * 1_000)
    }
    pub const fn from_km(km: u64) -> Self {
        Meters(km * 1_000_000)
    }
    pub const fn as_mm(self) -> u64 {
        self.0
    }
    pub fn as_m_f64(self) -> f64 {
        self.0 as f64 / 1e3
    }
    pub fn as_km_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
    /// This length and `limit` as an error about the two shows them: in metres when
    /// kilometres would print them equal ("120.0001km" against 120 km read "120km").
    pub fn shown_against(self, limit: Meters) -> (String, String) {
        let (v, l) = (self.to_string(), limit.to_string());
        if v == l {
            (format!("{}m", self.as_m_f64()), format!("{}m", limit.as_m_f64()))
        } else {
            (v, l)
        }
    }

    /// One-way propagation over this length at `per_km` delay per kilometre, rounded to the
    /// nearest nanosecond.
    pub fn propagation(self, per_km: Nanos) -> Nanos {
        let ns = (u128::from(self.0) * u128::from(per_km.0) + 500_000) / 1_000_000;
        Nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

/// A ratio such as an oversubscription "3:1", kept as two integers scaled by 1000 so that
/// "1.5:1" is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ratio {
    num: u64,
    den: u64,
}

impl Ratio {
    pub const ONE: Ratio = Ratio { num: 1000, den: 1000 };
    /// `num:den`; both must be positive.
    pub fn new(num: u64, den: u64) -> Option<Ratio> {
        (num > 0 && den > 0).then(|| Ratio { num: num * 1000, den: den * 1000 })
    }
    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
    /// Numerator and denominator, scaled by 1000 as kept ("1.5:1" is (1500, 1000)).
    pub fn parts(self) -> (u64, u64) {
        (self.num, self.den)
    }
    /// Splits `total` ports into (down, up) so that down:up is as close to this ratio as
    /// possible without exceeding it (down rounded down, at least one port each).
    pub fn split_ports(self, total: u32) -> (u32, u32) {
        let t = u64::from(total);
        let down = (t * self.num / (self.num + self.den)).clamp(1, t.saturating_sub(1).max(1));
        let down = u32::try_from(down).unwrap_or(total);
        (down, total - down)
    }
}

impl FromStr for Ratio {
    type Err = UnitError;
    fn from_str(input: &str) -> Result<Self, UnitError> {
        const KIND: Kind = Kind {
            what: "ratio part",
            base: "thousandths",
            units: &[],
            list: "",
            example: "",
            bare: Some(1000),
            case_insensitive: false,
        };
        let bad = || UnitError::Expected {
            what: "ratio",
            input: input.to_string(),
            expected: "two positive numbers joined by a colon, such as 3:1 or 2.5:1",
        };
        let (a, b) = input.split_once(':').ok_or_else(bad)?;
        let scaled = |s: &str| parse(s, &KIND).ok().filter(|v| *v > 0);
        match (scaled(a), scaled(b)) {
            (Some(num), Some(den)) => Ok(Ratio { num, den }),
            _ => Err(bad()),
        }
    }
}
impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = gcd(self.num, self.den);
        let (n, d) = (self.num / g, self.den / g);
        if d == 1 || n % d == 0 {
            write!(f, "{}:1", n / d)
        } else {
            let r = self.as_f64();
            if (r * 100.0).fract().abs() < 1e-9 {
                write!(f, "{}:1", (r * 100.0).round() / 100.0)
            } else {
                write!(f, "{n}:{d}")
            }
        }
    }
}
impl serde::Serialize for Ratio {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}
impl<'de> serde::Deserialize<'de> for Ratio {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a.max(1)
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_issue_examples() {
        assert_eq!("400Gbps".parse::<BitsPerSec>().unwrap(), BitsPerSec(400_000_000_000));
        assert_eq!("1.6Tbps".parse::<BitsPerSec>().unwrap(), BitsPerSec(1_600_000_000_000));
        assert_eq!("2us".parse::<Nanos>().unwrap(), Nanos(2_000));
        assert_eq!("1.5ms".parse::<Nanos>().unwrap(), Nanos(1_500_000));
        assert_eq!("1GiB".parse::<Bytes>().unwrap(), Bytes(1 << 30));
        assert_eq!("64MB".parse::<Bytes>().unwrap(), Bytes(64_000_000));
        assert_eq!("100km".parse::<Meters>().unwrap(), Meters::from_km(100));
        assert_eq!("3m".parse::<Meters>().unwrap(), Meters::from_m(3));
    }

    #[test]
    fn parses_variants() {
        assert_eq!("900GBps".parse::<BitsPerSec>().unwrap(), BitsPerSec(7_200_000_000_000));
        assert_eq!("25 GB/s".parse::<BitsPerSec>().unwrap(), BitsPerSec(200_000_000_000));
        assert_eq!("4096".parse::<Bytes>().unwrap(), Bytes(4096));
        assert_eq!("1.5KiB".parse::<Bytes>().unwrap(), Bytes(1536));
        assert_eq!("1.5m".parse::<Meters>().unwrap(), Meters(1500));
        assert_eq!("1_000ns".parse::<Nanos>().unwrap(), Nanos(1000));
        assert_eq!("2µs".parse::<Nanos>().unwrap(), Nanos(2000));
        assert_eq!("1MS".parse::<Nanos>().unwrap(), Nanos(1_000_000));
        assert_eq!("100KM".parse::<Meters>().unwrap(), Meters::from_km(100));
        // Not where the case spells another SI unit: megametres, megaseconds ("0.1Mm" read as
        // 0.1 mm).
        assert!("1Mm".parse::<Meters>().unwrap_err().to_string().contains("unit \"Mm\""));
        assert!("1Ms".parse::<Nanos>().is_err());
        // Scientific notation ("1e308s" read as an unknown unit "e308s").
        assert_eq!("1e3s".parse::<Nanos>().unwrap(), Nanos(1_000_000_000_000));
        assert_eq!("2.5E-3s".parse::<Nanos>().unwrap(), Nanos(2_500_000));
        assert_eq!("4e+2Gbps".parse::<BitsPerSec>().unwrap(), BitsPerSec(400_000_000_000));
        assert_eq!("1.25e1km".parse::<Meters>().unwrap(), Meters(12_500_000));
        assert_eq!(
            "1e308s".parse::<Nanos>().unwrap_err().to_string(),
            "invalid duration \"1e308s\": value is too large"
        );
        assert!("1e-40s".parse::<Nanos>().unwrap_err().to_string().contains("not a whole number"));
        assert_eq!("0e-40s".parse::<Nanos>().unwrap(), Nanos(0));
        // "1EB" is not an exponent (no digit follows the E): an unknown unit, named as such.
        assert!("1EB".parse::<Bytes>().unwrap_err().to_string().contains("unknown unit \"EB\""));
        assert_eq!("3:1".parse::<Ratio>().unwrap().as_f64(), 3.0);
        assert_eq!("1.5:1".parse::<Ratio>().unwrap().as_f64(), 1.5);
    }

    #[test]
    fn errors_quote_the_input() {
        let e = "400Gbs".parse::<BitsPerSec>().unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid rate \"400Gbs\": unknown unit \"Gbs\", expected one of bps, kbps, Mbps, Gbps, \
             Tbps, or bytes per second as MBps, GBps, GB/s"
        );
        let e = "0.5B".parse::<Bytes>().unwrap_err().to_string();
        assert_eq!(e, "invalid size \"0.5B\": not a whole number of bytes");
        let e = "99999999999999999999TiB".parse::<Bytes>().unwrap_err().to_string();
        assert_eq!(e, "invalid size \"99999999999999999999TiB\": value is too large");
        let e = "-3m".parse::<Meters>().unwrap_err().to_string();
        assert_eq!(e, "invalid length \"-3m\": must not be negative");
        let e = "fast".parse::<BitsPerSec>().unwrap_err().to_string();
        assert!(e.starts_with("invalid rate \"fast\": expected a number"), "{e}");
        assert!("400".parse::<BitsPerSec>().is_err(), "a bare rate has no unit");
        assert!("3".parse::<Ratio>().is_err());
        assert!("0:1".parse::<Ratio>().is_err());
        assert!("".parse::<Nanos>().is_err());
        assert!(".".parse::<Nanos>().is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["400Gbps", "1.6Tbps", "2us", "1.5ms", "1GiB", "3m", "100km", "800ns"] {
            let shown = match s {
                _ if s.ends_with("bps") => s.parse::<BitsPerSec>().unwrap().to_string(),
                _ if s.ends_with('s') => s.parse::<Nanos>().unwrap().to_string(),
                _ if s.ends_with('B') => s.parse::<Bytes>().unwrap().to_string(),
                _ => s.parse::<Meters>().unwrap().to_string(),
            };
            assert_eq!(shown, s);
        }
        assert_eq!(Bytes(64_000_000).display_si(), "64MB");
        assert_eq!(Ratio::new(3, 1).unwrap().to_string(), "3:1");
        assert_eq!("1.5:1".parse::<Ratio>().unwrap().to_string(), "1.5:1");
    }

    #[test]
    fn physics() {
        // 4096 bytes at 400 Gbps = 81.92 ns, rounded up.
        assert_eq!(BitsPerSec::gbps(400).transmit_time(Bytes(4096)), Nanos(82));
        // 1 GiB at 400 Gbps = 21.47483648 ms.
        assert_eq!(BitsPerSec::gbps(400).transmit_time(Bytes(1 << 30)), Nanos(21_474_837));
        assert_eq!(BitsPerSec::gbps(400).bytes_in(Nanos(1_000)), Bytes(50_000));
        assert_eq!(Meters::from_km(100).propagation(Nanos(4_900)), Nanos(490_000));
        assert_eq!(Meters::from_m(3).propagation(Nanos(4_900)), Nanos(15));
        assert_eq!(SimTime(10) + Nanos(5) - SimTime(3), Nanos(12));
        assert_eq!(Ratio::new(1, 1).unwrap().split_ports(64), (32, 32));
        assert_eq!(Ratio::new(3, 1).unwrap().split_ports(64), (48, 16));
    }

    #[test]
    fn serde_accepts_strings_and_integers() {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct T {
            a: BitsPerSec,
            b: Bytes,
        }
        let t: T = serde_json::from_str(r#"{"a":"400Gbps","b":4096}"#).unwrap();
        assert_eq!(t.a, BitsPerSec::gbps(400));
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"a":400000000000,"b":4096}"#);
        let e = serde_json::from_str::<T>(r#"{"a":"4Gbs","b":1}"#).err().unwrap().to_string();
        assert!(e.contains("invalid rate \"4Gbs\""), "{e}");
    }

    #[test]
    fn files_people_write_need_units_except_for_sizes_and_zero() {
        #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
        struct T {
            a: BitsPerSec,
            b: Bytes,
            t: Nanos,
            at: SimTime,
            m: Meters,
        }
        let bare = r#"{"a":400,"b":4096,"t":50,"at":7,"m":100}"#;
        // meshway's own output reads back: bare numbers are base units.
        let t: T = serde_json::from_str(bare).unwrap();
        assert_eq!((t.a, t.t, t.m), (BitsPerSec(400), Nanos(50), Meters(100)));
        let strict = |text: &str| units_required(|| serde_json::from_str::<T>(text)).map_err(|e| e.to_string());
        let e = strict(bare).unwrap_err();
        assert!(e.contains("invalid rate 400: a number needs a unit, as in \"400Gbps\""), "{e}");
        let e = strict(r#"{"a":0,"b":4096,"t":50,"at":0,"m":0}"#).unwrap_err();
        assert!(e.contains("invalid duration 50: a number needs a unit, as in \"50ms\" (units: ns, us"), "{e}");
        let e = strict(r#"{"a":0,"b":1,"t":0,"at":0,"m":100}"#).unwrap_err();
        assert!(e.contains("invalid length 100: a number needs a unit, as in \"100km\""), "{e}");
        let e = strict(r#"{"a":0,"b":1,"t":0,"at":-3,"m":0}"#).unwrap_err();
        assert!(e.contains("invalid duration -3: must not be negative"), "{e}");
        // As a string too ("--duration 0").
        assert_eq!(("0".parse::<Nanos>(), "0".parse::<Meters>()), (Ok(Nanos(0)), Ok(Meters(0))));
        assert!("5".parse::<Nanos>().is_err() && "0.0".parse::<BitsPerSec>() == Ok(BitsPerSec(0)));
        // 0 is 0 in every unit; a size's bare number is bytes, as in "4096".
        let ok = strict(r#"{"a":0,"b":4096,"t":0,"at":0,"m":0}"#).unwrap();
        assert_eq!((ok.a, ok.b, ok.t, ok.m), (BitsPerSec(0), Bytes(4096), Nanos(0), Meters(0)));
        // Inside, values are written with their base unit and read back exactly; outside, the
        // mode is off again (also after a nested call).
        let v = T { a: BitsPerSec(123_456_789), b: Bytes(5), t: Nanos(7), at: SimTime(9), m: Meters(1_500) };
        let text = units_required(|| units_required(|| serde_json::to_string(&v)).unwrap());
        assert_eq!(text, r#"{"a":"123456789bps","b":5,"t":"7ns","at":"9ns","m":"1500mm"}"#);
        assert_eq!(strict(&text).unwrap(), v);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"a":123456789,"b":5,"t":7,"at":9,"m":1500}"#);
        assert!(serde_json::from_str::<T>(bare).is_ok());
    }

    /// The string pattern of a type's schema, without its anchors (proptest generates from it).
    fn pattern_of<T: schemars::JsonSchema>() -> String {
        let s = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
        let v = serde_json::to_value(&s).unwrap();
        let p = v.get("pattern").or_else(|| v["anyOf"][0].get("pattern")).and_then(|p| p.as_str()).unwrap();
        p.trim_start_matches('^').trim_end_matches('$').to_string()
    }

    /// What a schema's pattern admits, the parser reads, but for a value's own bounds (too
    /// large, a fraction of the base unit): an editor's check does not pass what meshway
    /// refuses for its spelling ("400G", "-5km", "1ps" passed the schema).
    #[test]
    fn schema_patterns_admit_only_what_the_parser_reads() {
        use proptest::strategy::{Strategy, ValueTree};
        use proptest::test_runner::TestRunner;
        fn check<T: schemars::JsonSchema + FromStr<Err = UnitError>>() {
            let re = pattern_of::<T>();
            let strategy = proptest::string::string_regex(&re).unwrap();
            let mut runner = TestRunner::deterministic();
            for _ in 0..2000 {
                let s = strategy.new_tree(&mut runner).unwrap().current();
                // Past 12 significant digits a value overflows its type: a bound, not spelling
                // (a ratio says so in its general message).
                let long = s.split(|c: char| !c.is_ascii_digit()).any(|run| run.trim_start_matches('0').len() > 12);
                if long {
                    continue;
                }
                match s.parse::<T>() {
                    Ok(_) | Err(UnitError::Overflow { .. } | UnitError::Fraction { .. }) => {}
                    Err(e) => panic!("{re:?} admits {s:?}, which the parser refuses: {e}"),
                }
            }
        }
        check::<Bytes>();
        check::<BitsPerSec>();
        check::<Nanos>();
        check::<Meters>();
        check::<Ratio>();
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,24}") {
            let _ = s.parse::<Bytes>();
            let _ = s.parse::<BitsPerSec>();
            let _ = s.parse::<Nanos>();
            let _ = s.parse::<Meters>();
            let _ = s.parse::<Ratio>();
        }

        #[test]
        fn whole_units_display_and_parse_back_exactly(n in 1u64..1024, shift in 0u32..5) {
            let v = Bytes(n << (10 * shift));
            let shown = v.to_string();
            proptest::prop_assert_eq!(shown.parse::<Bytes>().unwrap(), v, "{}", shown);
            let r = BitsPerSec(n * 10u64.pow(3 * shift));
            proptest::prop_assert_eq!(r.to_string().parse::<BitsPerSec>().unwrap(), r);
        }

        #[test]
        fn transmit_time_is_ceiling(bytes in 0u64..1 << 40, gbps in 1u64..3200) {
            let r = BitsPerSec::gbps(gbps);
            let t = r.transmit_time(Bytes(bytes));
            proptest::prop_assert!(r.bytes_in(t).0 >= bytes);
            if t.0 > 0 {
                proptest::prop_assert!(r.bytes_in(Nanos(t.0 - 1)).0 < bytes);
            }
        }
    }
}

/// JSON Schema of a unit written as a human string or a bare integer in the base unit. The
/// string's `pattern` is the parser's grammar: an unsigned number (digits, `_`, one `.`),
/// then one of its units as it spells them (durations and lengths in any case but the SI
/// mega-units `Ms` and `Mm`), or the number alone where the type takes one. Value bounds
/// (a fraction of the base unit, a field's own range) are still the parser's to check.
macro_rules! unit_schema {
    ($ty:ident, $name:expr, $desc:expr, $example:expr, $integer:expr, $pattern:expr) => {
        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                match $integer {
                    Some(0) => schemars::json_schema!({
                        "description": $desc,
                        "anyOf": [
                            { "type": "string", "pattern": $pattern, "examples": [$example] },
                            { "type": "integer", "const": 0 }
                        ]
                    }),
                    Some(_) => schemars::json_schema!({
                        "description": $desc,
                        "anyOf": [
                            { "type": "string", "pattern": $pattern, "examples": [$example] },
                            { "type": "integer", "minimum": 0 }
                        ]
                    }),
                    None => schemars::json_schema!({
                        "description": $desc, "type": "string", "pattern": $pattern, "examples": [$example]
                    }),
                }
            }
        }
    };
}
/// An unsigned number as the parser reads it: digits with `_` separators and at most one `.`.
macro_rules! number_re {
    () => {
        r"[ \t]*\+?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[ \t]*"
    };
}
// The schema describes the files people write: there a duration, rate or length needs its
// unit (`units_required`), and only 0 may be a bare number.
unit_schema!(
    Bytes,
    "Bytes",
    "a size: \"1GiB\", \"64KB\", or a whole number of bytes",
    "1GiB",
    Some(1),
    concat!("^", number_re!(), r"(?:B|KB|kB|MB|GB|TB|PB|KiB|MiB|GiB|TiB|PiB)?[ \t]*$")
);
unit_schema!(
    BitsPerSec,
    "BitsPerSec",
    "a rate with its unit: \"400Gbps\", \"50GBps\"",
    "400Gbps",
    Some(0),
    concat!(
        "^(?:",
        number_re!(),
        r"(?:bps|kbps|Kbps|Mbps|Gbps|Tbps|Pbps|Bps|KBps|MBps|GBps|TBps|B/s|KB/s|MB/s|GB/s|TB/s|b/s|kb/s|Mb/s|Gb/s|Tb/s)[ \t]*|[ \t]*\+?0[0_]*(?:\.[0_]*)?[ \t]*)$"
    )
);
/// Durations in any case, but `Ms` (megaseconds).
macro_rules! time_re {
    () => {
        concat!(
            "^(?:",
            number_re!(),
            r"(?:[nN][sS]|[uU][sS]|µs|μs|m[sS]|MS|[sS]|[mM][iI][nN]|[hH]|[dD])[ \t]*|[ \t]*\+?0[0_]*(?:\.[0_]*)?[ \t]*)$"
        )
    };
}
unit_schema!(Nanos, "Nanos", "a duration with its unit: \"2ms\", \"1.5us\"", "2ms", Some(0), time_re!());
unit_schema!(SimTime, "SimTime", "a time from the start with its unit: \"2ms\"", "1ms", Some(0), time_re!());
unit_schema!(
    Meters,
    "Meters",
    "a length with its unit: \"100km\", \"3m\"",
    "100km",
    Some(0),
    concat!("^(?:", number_re!(), r"(?:m[mM]|MM|[cC][mM]|[mM]|[kK][mM])[ \t]*|[ \t]*\+?0[0_]*(?:\.[0_]*)?[ \t]*)$")
);
/// A ratio's part: a positive number to thousandths.
macro_rules! ratio_part_re {
    () => {
        r"[ \t]*\+?(?:0*[1-9][0-9]*(?:\.[0-9]{0,3})?|0*\.(?:[1-9][0-9]{0,2}|0[1-9][0-9]?|00[1-9]))[ \t]*"
    };
}
unit_schema!(
    Ratio,
    "Ratio",
    "a ratio down:up such as \"3:1\"",
    "3:1",
    None::<u8>,
    concat!("^", ratio_part_re!(), ":", ratio_part_re!(), "$")
);
