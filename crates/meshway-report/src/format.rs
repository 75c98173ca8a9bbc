//! The one set of number formatters behind every text report: counts, durations, percents,
//! money, power, rates and distances. Where two reports show the same kind of number at a
//! different precision, each precision has its own function, named after it, so that no
//! report's output depends on which module it was written in.

use meshway_units::{BitsPerSec, Nanos};

// ---------------------------------------------------------------------------------------------
// counts

/// 1234567 -> "1,234,567".
pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 1 -> "1 GPU", 2048 -> "2,048 GPUs".
pub fn gpus(n: u64) -> String {
    if n == 1 {
        "1 GPU".into()
    } else {
        format!("{} GPUs", thousands(n))
    }
}

// ---------------------------------------------------------------------------------------------
// durations

/// A duration in the largest unit that keeps it readable, three decimals and a space from
/// 10 us up ("9999 ns", "12.500 us", "1.234 ms", "2.000 s"): simulator and testbed tables.
pub fn time(ns: u64) -> String {
    let (v, unit) = match ns {
        0..=9_999 => return format!("{ns} ns"),
        10_000..=999_999 => (ns as f64 / 1e3, "us"),
        1_000_000..=999_999_999 => (ns as f64 / 1e6, "ms"),
        _ => (ns as f64 / 1e9, "s"),
    };
    format!("{v:.3} {unit}")
}

/// [`time`] of a [`Nanos`].
pub fn nanos(n: Nanos) -> String {
    time(n.0)
}

/// A span as [`Nanos`] displays it, no space, trailing zeros dropped ("1.234ms", "50us"):
/// the measurement commands (ping, perf, trace, history).
pub fn span(ns: u64) -> String {
    Nanos(ns).to_string()
}

/// [`span`] of a fractional nanosecond count (a mean, a jitter), rounded to the nanosecond;
/// negative values show as 0.
pub fn span_f64(ns: f64) -> String {
    Nanos(ns.round().max(0.0) as u64).to_string()
}

/// Milliseconds with one decimal, no space ("12.3ms"): inference latencies. From 10 s on,
/// seconds with one decimal ("384.1s"), so a stalled region does not print 384103.8ms.
pub fn ms1(ns: u64) -> String {
    if ns >= 10_000_000_000 {
        format!("{:.1}s", ns as f64 / 1e9)
    } else {
        format!("{:.1}ms", ns as f64 / 1e6)
    }
}

/// Milliseconds with three decimals, no space ("12.345ms"): training steps and DCI round trips.
pub fn ms3(ns: u64) -> String {
    format!("{:.3}ms", ns as f64 / 1e6)
}

/// Seconds with two decimals, no space ("1.25s"): end-to-end inference latencies.
pub fn secs2(ns: u64) -> String {
    format!("{:.2}s", ns as f64 / 1e9)
}

/// A run length: whole hours as "2h", whole minutes as "10min", anything else as [`span`].
pub fn run_length(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    let whole = ns.is_multiple_of(1_000_000_000);
    if whole && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if whole && s.is_multiple_of(60) {
        format!("{}min", s / 60)
    } else {
        span(ns)
    }
}

/// A chart's axis tick: three significant digits, trailing zeros dropped (0.15000000000000002
/// -> "0.15", 27.5 -> "27.5", 1250 -> "1250", 0 -> "0"). Ticks are multiples of 1, 2, 2.5 or
/// 5 times a power of ten from 0, at most 12 of them, so three digits tell each apart.
pub fn tick(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_finite() { "0".into() } else { "-".into() };
    }
    let decimals = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------------
// percents

/// A ratio as a percent with one decimal (0.1234 -> "12.3%").
pub fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A ratio as a percent with three decimals (0.001234 -> "0.123%"): loss.
pub fn pct3(x: f64) -> String {
    format!("{:.3}%", x * 100.0)
}

/// A ratio as a percent with four decimals (0.00001234 -> "0.0012%"): the small shares of
/// a break-even search.
pub fn pct4(x: f64) -> String {
    format!("{:.4}%", x * 100.0)
}

/// A signed change as a percent with one decimal (0.05 -> "+5.0%", -0.1 -> "-10.0%").
pub fn pct_signed(x: f64) -> String {
    if x.is_finite() {
        format!("{:+.1}%", x * 100.0)
    } else {
        "-".into()
    }
}

/// A signed change as a whole percent (0.054 -> "+5%"); "-" when there is none (a change
/// against 0, as when every price in a catalog is 0).
pub fn pct_signed0(x: f64) -> String {
    if x.is_finite() {
        format!("{:+.0}%", x * 100.0)
    } else {
        "-".into()
    }
}

/// `part` as a share of `whole` with one decimal; "-" when `whole` is 0 and "<0.1%" for a
/// share that is not zero but would round to it.
pub fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else if part > 0 && part * 1000 < whole {
        "<0.1%".into()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

// ---------------------------------------------------------------------------------------------
// money and power

/// "$12.35M", "$2.5k", "$950".
pub fn dollars(v: f64) -> String {
    if v >= 1e6 {
        format!("${:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("${:.1}k", v / 1e3)
    } else {
        format!("${v:.0}")
    }
}

/// "1.20 MW", "1.5 kW", "300 W".
pub fn watts(w: f64) -> String {
    if w >= 1e6 {
        format!("{:.2} MW", w / 1e6)
    } else if w >= 1e3 {
        format!("{:.1} kW", w / 1e3)
    } else {
        format!("{w:.0} W")
    }
}

// ---------------------------------------------------------------------------------------------
// rates

/// A rate as [`BitsPerSec`] displays it ("400Gbps").
pub fn rate(bps: u64) -> String {
    BitsPerSec(bps).to_string()
}

/// [`rate`] of a measured (fractional) rate, rounded to the bit per second; negative values
/// show as 0.
pub fn rate_f64(bps: f64) -> String {
    BitsPerSec(bps.max(0.0).round() as u64).to_string()
}

/// Gigabits per second with one decimal and a space ("380.2 Gbps"): simulated bandwidths.
pub fn gbps(g: f64) -> String {
    format!("{g:.1} Gbps")
}

/// Gigabits per second, whole, with a space ("380 Gbps"): the demo's summary table.
pub fn gbps0(g: f64) -> String {
    format!("{g:.0} Gbps")
}

// ---------------------------------------------------------------------------------------------
// distances

/// Metres as kilometres: whole ones bare ("100km"), others with three decimals ("0.500km").
pub fn km(m: u64) -> String {
    if m.is_multiple_of(1000) {
        format!("{}km", m / 1000)
    } else {
        format!("{:.3}km", m as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    /// The sweep chart's busbw axis printed every tick below about 2.5 GB/s as "0" (and
    /// dropped the repeats), leaving one label.
    #[test]
    fn ticks_keep_three_significant_digits() {
        let got: Vec<String> = [0.0, 0.05, 0.1, 0.15000000000000002, 0.30000000000000004, 2.5, 27.5, 1250.0, 400.0]
            .iter()
            .map(|&v| super::tick(v))
            .collect();
        assert_eq!(got, ["0", "0.05", "0.1", "0.15", "0.3", "2.5", "27.5", "1250", "400"]);
        assert_eq!(super::tick(0.000123456), "0.000123");
        assert_eq!(super::tick(-0.25), "-0.25");
    }

    #[test]
    fn long_latencies_print_in_seconds() {
        assert_eq!(super::ms1(246_200_000), "246.2ms");
        assert_eq!(super::ms1(9_999_000_000), "9999.0ms");
        assert_eq!(super::ms1(384_103_800_000), "384.1s");
    }

    use super::*;

    #[test]
    fn counts_money_power() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(100), "100");
        assert_eq!(gpus(1), "1 GPU");
        assert_eq!(gpus(2048), "2,048 GPUs");
        assert_eq!(dollars(12_345_678.0), "$12.35M");
        assert_eq!(dollars(2_500.0), "$2.5k");
        assert_eq!(dollars(950.0), "$950");
        assert_eq!(watts(1500.0), "1.5 kW");
        assert_eq!(watts(1_200_000.0), "1.20 MW");
    }

    #[test]
    fn durations() {
        assert_eq!(time(9_999), "9999 ns");
        assert_eq!(time(12_500), "12.500 us");
        assert_eq!(time(1_234_000), "1.234 ms");
        assert_eq!(time(2_000_000_000), "2.000 s");
        assert_eq!(nanos(Nanos(1_234_000)), "1.234 ms");
        assert_eq!(span(1_234_000), "1.234ms");
        assert_eq!(span_f64(-3.0), span(0));
        assert_eq!(span_f64(1_233_999.6), span(1_234_000));
        assert_eq!(ms1(12_345_678), "12.3ms");
        assert_eq!(ms3(12_345_678), "12.346ms");
        assert_eq!(secs2(1_254_000_000), "1.25s");
        assert_eq!(run_length(7_200_000_000_000), "2h");
        assert_eq!(run_length(600_000_000_000), "10min");
        assert_eq!(run_length(90_500_000_000), span(90_500_000_000));
    }

    #[test]
    fn percents() {
        assert_eq!(pct(0.1234), "12.3%");
        assert_eq!(pct3(0.001234), "0.123%");
        assert_eq!(pct4(0.00001234), "0.0012%");
        assert_eq!(pct_signed(0.05), "+5.0%");
        assert_eq!(pct_signed(-0.1), "-10.0%");
        assert_eq!(pct_signed0(0.054), "+5%");
        assert_eq!((pct_signed0(f64::NAN), pct_signed(f64::INFINITY)), ("-".to_string(), "-".to_string()));
        assert_eq!(share(1, 0), "-");
        assert_eq!(share(1, 10_000), "<0.1%");
        assert_eq!(share(0, 10), "0.0%");
        assert_eq!(share(1, 4), "25.0%");
    }

    #[test]
    fn rates_and_distances() {
        assert_eq!(rate(400_000_000_000), BitsPerSec(400_000_000_000).to_string());
        assert_eq!(rate_f64(-5.0), rate(0));
        assert_eq!(rate_f64(99.6), rate(100));
        assert_eq!(gbps(380.24), "380.2 Gbps");
        assert_eq!(gbps0(380.6), "381 Gbps");
        assert_eq!(km(100_000), "100km");
        assert_eq!(km(500), "0.500km");
    }
}
