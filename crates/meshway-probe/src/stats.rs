//! Delay statistics: a log-linear histogram for percentiles, exact moments, and the three
//! jitter metrics.
//!
//! Definitions (used by every meshway command, documented in docs/measurement.md):
//!
//! - **mean, stddev**: exact over all samples; stddev is the population standard deviation
//!   `sqrt(Σ(x − mean)² / n)`.
//! - **percentile p**: nearest rank: the smallest recorded value `v` such that at least
//!   `ceil(p × n)` samples are `≤ v`, read from the histogram: values below 128 ns are exact,
//!   larger values fall in buckets `2^-7` (0.78 %) of their size wide and are reported as the
//!   bucket's midpoint clamped to [min, max], so a percentile is within **±0.4 %** of the exact
//!   nearest-rank value.
//! - **RFC 3550 interarrival jitter**: `J += (|D(i−1, i)| − J) / 16` over consecutive received
//!   samples in arrival order, where `D` is the difference of their delays (RFC 3550 §6.4.1 and
//!   §A.8; for round-trip probes the delay is the RTT). Starts at 0.
//! - **mean absolute consecutive difference**: `Σ|d_i − d_{i−1}| / (n − 1)` over the same
//!   sequence (an IPDV in the sense of RFC 5481 without the sign).
//! - **p95 − p50**: the spread of the delay distribution's upper half (a PDV in the sense of
//!   RFC 5481, relative to the median instead of the minimum).

use serde::Serialize;

/// Sub-bucket bits: each power-of-two range is split into 2^PRECISION_BITS buckets.
pub const PRECISION_BITS: u32 = 7;
const SUB: u64 = 1 << PRECISION_BITS;
/// Worst-case relative error of a reported percentile (half a bucket).
pub const PERCENTILE_RELATIVE_ERROR: f64 = 1.0 / (2 * SUB) as f64;

/// Log-linear histogram of `u64` values (nanoseconds here): exact below 128, then 128 buckets
/// per power of two.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// Bucket index of a value.
    pub fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // floor(log2 v) ≥ PRECISION_BITS
        let shift = e - PRECISION_BITS;
        let m = (v >> shift) - SUB; // in [0, SUB)
        (SUB + u64::from(shift) * SUB + m) as usize
    }

    /// The half-open range `[lo, hi)` of values in bucket `i` (`hi` saturates at `u64::MAX`).
    pub fn bucket_range(i: usize) -> (u64, u64) {
        let i = i as u64;
        if i < SUB {
            return (i, i + 1);
        }
        let shift = (i - SUB) / SUB;
        let m = (i - SUB) % SUB;
        let lo = (SUB + m) << shift;
        let hi = ((SUB + m) as u128 + 1) << shift;
        (lo, u64::try_from(hi).unwrap_or(u64::MAX))
    }

    pub fn record(&mut self, v: u64) {
        let i = Histogram::index(v);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        self.total += 1;
    }

    pub fn merge(&mut self, o: &Histogram) {
        if self.counts.len() < o.counts.len() {
            self.counts.resize(o.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.total += o.total;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// Nearest-rank quantile `q` in [0, 1] as the midpoint of the bucket holding that rank;
    /// `None` when empty. Callers clamp to the exact min and max.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, hi) = Histogram::bucket_range(i);
                return Some(lo + (hi - lo) / 2);
            }
        }
        None
    }

    /// Non-empty buckets as `(upper bound inclusive, cumulative count)`, for Prometheus-style
    /// export.
    pub fn cumulative(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 {
                seen += c;
                out.push((Histogram::bucket_range(i).1 - 1, seen));
            }
        }
        out
    }
}

/// Accumulates delay samples (in arrival order) and produces a [`Summary`].
#[derive(Debug, Clone, Default)]
pub struct DelayStats {
    hist: Histogram,
    n: u64,
    min: u64,
    max: u64,
    sum: u128,
    sum_sq: u128,
    last: Option<u64>,
    jitter_rfc3550: f64,
    abs_diff_sum: u128,
    diffs: u64,
    /// The delay just before the first recorded one (see [`DelayStats::after`]).
    lead: Option<u64>,
}

/// Delays before a bucket or window that [`DelayStats::after`] runs RFC 3550's estimator over
/// (15/16 of J is carried from one delay to the next: after 64 it holds 98.4% of the steady
/// value).
pub const JITTER_LEAD: usize = 64;

impl DelayStats {
    pub fn new() -> DelayStats {
        DelayStats::default()
    }

    /// Continues RFC 3550's jitter from the delays just before these (in order), as a receiver
    /// running since then reports it; call before the first [`DelayStats::record`]. A bucket or
    /// window of a few samples otherwise starts J at 0: one probe every 10 s read 2.76 ms a
    /// minute where the hour of the same delays read 10 ms. Only the jitter sees them.
    pub fn after(&mut self, prior: impl IntoIterator<Item = u64>) {
        let (mut last, mut j) = (None::<u64>, 0.0);
        for ns in prior {
            if let Some(p) = last {
                j += (p.abs_diff(ns) as f64 - j) / 16.0;
            }
            last = Some(ns);
        }
        self.jitter_rfc3550 = j;
        self.lead = last;
    }

    /// Adds one delay sample, in nanoseconds, in the order the samples arrived.
    pub fn record(&mut self, ns: u64) {
        self.hist.record(ns);
        if self.n == 0 {
            self.min = ns;
            self.max = ns;
        } else {
            self.min = self.min.min(ns);
            self.max = self.max.max(ns);
        }
        self.n += 1;
        self.sum += u128::from(ns);
        self.sum_sq += u128::from(ns) * u128::from(ns);
        if let Some(prev) = self.last {
            let d = prev.abs_diff(ns);
            self.jitter_rfc3550 += (d as f64 - self.jitter_rfc3550) / 16.0;
            self.abs_diff_sum += u128::from(d);
            self.diffs += 1;
        } else if let Some(prev) = self.lead.take() {
            self.jitter_rfc3550 += (prev.abs_diff(ns) as f64 - self.jitter_rfc3550) / 16.0;
        }
        self.last = Some(ns);
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn histogram(&self) -> &Histogram {
        &self.hist
    }

    /// Percentile `q` (0..=1), clamped to the exact min and max; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        self.hist.quantile(q).map(|v| v.clamp(self.min, self.max))
    }

    pub fn summary(&self) -> Option<Summary> {
        if self.n == 0 {
            return None;
        }
        let n = self.n as f64;
        let mean = self.sum as f64 / n;
        // Population variance from exact integer sums: (n Σx² − (Σx)²) / n².
        let var_num = (self.n as u128 * self.sum_sq).saturating_sub(self.sum * self.sum);
        let stddev = (var_num as f64).sqrt() / n;
        let q = |p| self.quantile(p).unwrap_or(0);
        let p50 = q(0.50);
        let p95 = q(0.95);
        Some(Summary {
            count: self.n,
            min_ns: self.min,
            mean_ns: mean,
            max_ns: self.max,
            stddev_ns: stddev,
            p50_ns: p50,
            p90_ns: q(0.90),
            p95_ns: p95,
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            jitter_rfc3550_ns: self.jitter_rfc3550,
            jitter_mean_abs_diff_ns: if self.diffs == 0 { 0.0 } else { self.abs_diff_sum as f64 / self.diffs as f64 },
            jitter_p95_p50_ns: p95.saturating_sub(p50),
            percentile_relative_error: PERCENTILE_RELATIVE_ERROR,
        })
    }
}

/// Statistics of a set of delays. Field names carry their unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub min_ns: u64,
    pub mean_ns: f64,
    pub max_ns: u64,
    pub stddev_ns: f64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p95_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub jitter_rfc3550_ns: f64,
    pub jitter_mean_abs_diff_ns: f64,
    pub jitter_p95_p50_ns: u64,
    /// Worst-case relative error of the percentiles (histogram precision).
    pub percentile_relative_error: f64,
}

/// Counts of a probe session: what was sent and what came back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LossCounts {
    pub sent: u64,
    /// Distinct probes answered in time.
    pub received: u64,
    /// Probes not answered within the timeout (late answers included).
    pub lost: u64,
    /// Answers for a probe that had already been answered.
    pub duplicates: u64,
    /// Answers that arrived after an answer to a later probe (RFC 4737 reordered).
    pub reordered: u64,
    /// Answers that arrived after their probe's timeout (counted in `lost`).
    pub late: u64,
    /// Answers whose times cannot be right, left out: received before their probe was sent,
    /// or a reflector's stated hold longer than the whole round trip.
    pub implausible: u64,
    /// Probes the target refused at once (tcp, http: a connection reset), counted in `lost`
    /// too, as soon as refused rather than at their timeout.
    pub refused: u64,
}

impl LossCounts {
    /// Lost over sent, 0 when nothing was sent.
    pub fn loss_ratio(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.lost as f64 / self.sent as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn histogram_buckets_tile_the_line() {
        let mut prev_hi = 0;
        for i in 0..5000 {
            let (lo, hi) = Histogram::bucket_range(i);
            assert_eq!(lo, prev_hi, "bucket {i}");
            assert!(hi > lo);
            assert_eq!(Histogram::index(lo), i);
            assert_eq!(Histogram::index(hi - 1), i);
            prev_hi = hi;
        }
        assert_eq!(Histogram::index(u64::MAX), Histogram::index(u64::MAX - 1));
    }

    #[test]
    fn known_inputs_one_to_hundred_ms() {
        let mut s = DelayStats::new();
        for i in 1..=100 {
            s.record(i * MS);
        }
        let m = s.summary().unwrap();
        assert_eq!(m.count, 100);
        assert_eq!((m.min_ns, m.max_ns), (MS, 100 * MS));
        assert!((m.mean_ns - 50.5e6).abs() < 1e-6);
        // population stddev of 1..=100 is sqrt((100²−1)/12) = 28.866 ms
        assert!((m.stddev_ns - 28_866_070.05).abs() < 1.0, "{}", m.stddev_ns);
        for (got, exact) in [(m.p50_ns, 50), (m.p90_ns, 90), (m.p95_ns, 95), (m.p99_ns, 99), (m.p999_ns, 100)] {
            let exact = exact * MS;
            let err = (got as f64 - exact as f64).abs() / exact as f64;
            assert!(err <= PERCENTILE_RELATIVE_ERROR, "got {got} want {exact}");
        }
        // Every consecutive difference is 1 ms.
        assert_eq!(m.jitter_mean_abs_diff_ns, MS as f64);
        let want = MS as f64 * (1.0 - (15.0f64 / 16.0).powi(99));
        assert!((m.jitter_rfc3550_ns - want).abs() < 1e-3, "{} vs {want}", m.jitter_rfc3550_ns);
    }

    /// A bucket of 6 alternating delays continued from 64 before it: J as a receiver running
    /// throughout reports it (70 delays, 69 differences), not restarted at 0 (5 differences).
    #[test]
    fn jitter_continues_from_the_delays_before() {
        let alt = |i: u64| if i.is_multiple_of(2) { 10 * MS } else { 20 * MS };
        let mut s = DelayStats::new();
        s.after((0..64).map(alt));
        for i in 64..70 {
            s.record(alt(i));
        }
        let m = s.summary().unwrap();
        let want = 10.0 * MS as f64 * (1.0 - (15.0f64 / 16.0).powi(69));
        assert!((m.jitter_rfc3550_ns - want).abs() < 1e-3, "{} vs {want}", m.jitter_rfc3550_ns);
        // Only the jitter sees them: 6 samples, 5 differences of 10 ms.
        assert_eq!((m.count, m.jitter_mean_abs_diff_ns), (6, 10.0 * MS as f64));
        let mut fresh = DelayStats::new();
        (64..70).for_each(|i| fresh.record(alt(i)));
        let restarted = fresh.summary().unwrap().jitter_rfc3550_ns;
        assert!((restarted - 10.0 * MS as f64 * (1.0 - (15.0f64 / 16.0).powi(5))).abs() < 1e-3);
    }

    #[test]
    fn jitter_of_alternating_delays() {
        // 10, 20, 10, 20, ... ms: every |D| = 10 ms.
        let mut s = DelayStats::new();
        for i in 0..9 {
            s.record(if i % 2 == 0 { 10 * MS } else { 20 * MS });
        }
        let m = s.summary().unwrap();
        assert_eq!(m.jitter_mean_abs_diff_ns, 10.0 * MS as f64);
        let want = 10.0 * MS as f64 * (1.0 - (15.0f64 / 16.0).powi(8));
        assert!((m.jitter_rfc3550_ns - want).abs() < 1e-3);
        // 5 samples of 10 ms and 4 of 20 ms: p50 is 10 ms (rank 5), p95 is 20 ms.
        assert_eq!(m.p50_ns, 10 * MS);
        assert!(m.p95_ns.abs_diff(20 * MS) as f64 <= 20e6 * PERCENTILE_RELATIVE_ERROR, "{}", m.p95_ns);
        assert_eq!(m.jitter_p95_p50_ns, m.p95_ns - 10 * MS);
        assert!((m.stddev_ns - 4_969_039.949).abs() < 1.0, "{}", m.stddev_ns);
    }

    #[test]
    fn constant_delay_has_no_jitter() {
        let mut s = DelayStats::new();
        for _ in 0..50 {
            s.record(1_234_567);
        }
        let m = s.summary().unwrap();
        assert_eq!(
            (m.stddev_ns, m.jitter_rfc3550_ns, m.jitter_mean_abs_diff_ns, m.jitter_p95_p50_ns),
            (0.0, 0.0, 0.0, 0)
        );
        assert_eq!((m.p50_ns, m.p999_ns), (1_234_567, 1_234_567));
        assert!(DelayStats::new().summary().is_none());
    }

    proptest! {
        #[test]
        fn percentiles_are_within_stated_precision(mut v in proptest::collection::vec(0u64..10_000_000_000, 1..300), q in 0.0f64..1.0) {
            let mut s = DelayStats::new();
            for &x in &v { s.record(x); }
            v.sort_unstable();
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            let exact = v[rank - 1];
            let got = s.quantile(q).unwrap();
            let err = got.abs_diff(exact) as f64;
            prop_assert!(err <= (exact as f64 * PERCENTILE_RELATIVE_ERROR).max(0.0) + 1.0, "got {} exact {}", got, exact);
        }
    }
}
