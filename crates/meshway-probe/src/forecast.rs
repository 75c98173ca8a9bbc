//! Trend forecasting for capacity planning: an ordinary least-squares line through a series,
//! a 95 % prediction interval, and when the line (and the interval's edges) cross a threshold.
//!
//! For `n` points `(t, y)`: slope `b = Sxy / Sxx`, intercept `a = ȳ − b t̄`, residual standard
//! error `s = sqrt(SSE / (n − 2))`; a new observation at `t` lies within
//! `a + b t ± q · s · sqrt(1 + 1/n + (t − t̄)² / Sxx)` with 95 % probability, `q` being
//! Student's t quantile with `n − 2` degrees of freedom (table below; beyond 30, the
//! Cornish-Fisher expansion of [`t975`]).

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fit {
    pub n: usize,
    pub slope_per_s: f64,
    pub intercept: f64,
    pub residual_stddev: f64,
    /// Share of the series' variance the line explains; None for a constant series, which
    /// has none to explain (`null` in JSON).
    pub r_squared: Option<f64>,
    t_mean: f64,
    sxx: f64,
    quantile: f64,
}

/// Two-sided 95 % Student t quantiles for 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
    2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

/// Fits a line to `(t seconds, y)` points; `None` with fewer than 3 points or no spread in t.
/// The 97.5th percentile of Student's t with `df` degrees of freedom (at least 1): the
/// table to 30, then the Cornish-Fisher expansion of t about the normal quantile in powers
/// of 1/df to the fourth (Abramowitz and Stegun 26.7.5), within 1e-5 of the exact value
/// from 31 degrees on (2.0395 at 31 and 1.9840 at 100; 1.959964 in the limit).
pub fn t975(df: usize) -> f64 {
    if df == 0 {
        return f64::INFINITY;
    }
    if df <= 30 {
        return T975[df - 1];
    }
    let z: f64 = 1.959_963_984_540_054;
    let v = df as f64;
    let (z3, z5, z7, z9) = (z.powi(3), z.powi(5), z.powi(7), z.powi(9));
    z + (z3 + z) / (4.0 * v)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * v * v)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * v.powi(3))
        + (79.0 * z9 + 776.0 * z.powi(7) + 1482.0 * z5 - 1920.0 * z3 - 945.0 * z) / (92160.0 * v.powi(4))
}

pub fn fit(points: &[(f64, f64)]) -> Option<Fit> {
    let n = points.len();
    if n < 3 {
        return None;
    }
    let nf = n as f64;
    let t_mean = points.iter().map(|p| p.0).sum::<f64>() / nf;
    let y_mean = points.iter().map(|p| p.1).sum::<f64>() / nf;
    let sxx: f64 = points.iter().map(|p| (p.0 - t_mean).powi(2)).sum();
    if sxx <= 0.0 || !sxx.is_finite() {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - t_mean) * (p.1 - y_mean)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - y_mean).powi(2)).sum();
    let slope = sxy / sxx;
    let intercept = y_mean - slope * t_mean;
    let sse: f64 = points.iter().map(|p| (p.1 - intercept - slope * p.0).powi(2)).sum();
    let df = n - 2;
    Some(Fit {
        n,
        slope_per_s: slope,
        intercept,
        residual_stddev: (sse / df as f64).sqrt(),
        r_squared: (syy > 0.0).then(|| 1.0 - sse / syy),
        t_mean,
        sxx,
        quantile: t975(df),
    })
}

impl Fit {
    pub fn predict(&self, t: f64) -> f64 {
        self.intercept + self.slope_per_s * t
    }

    /// The 95 % prediction interval at `t`.
    pub fn interval(&self, t: f64) -> (f64, f64) {
        let half = self.quantile
            * self.residual_stddev
            * (1.0 + 1.0 / self.n as f64 + (t - self.t_mean).powi(2) / self.sxx).sqrt();
        let y = self.predict(t);
        (y - half, y + half)
    }

    /// When the series reaches `threshold` (from below when `rising`, a ceiling such as
    /// latency; from above otherwise, a floor such as throughput) after `from`, searching up to
    /// `until` (seconds) in 10,000 steps: the interval's near edge, the line, and the far edge.
    /// `expected_s` is `None` when the line does not reach the threshold within the horizon.
    pub fn crossing(&self, threshold: f64, rising: bool, from: f64, until: f64) -> Crossing {
        let reached = |v: f64| if rising { v >= threshold } else { v <= threshold };
        let near = |t: f64| {
            let (lo, hi) = self.interval(t);
            if rising {
                hi
            } else {
                lo
            }
        };
        let far = |t: f64| {
            let (lo, hi) = self.interval(t);
            if rising {
                lo
            } else {
                hi
            }
        };
        // The first grid point past the threshold, then bisection between it and the point
        // before: the time does not depend on the horizon's grid.
        let first = |f: &dyn Fn(f64) -> f64| -> Option<f64> {
            let steps = 10_000;
            let dt = (until - from) / steps as f64;
            let k = (0..=steps).find(|&k| reached(f(from + dt * k as f64)))?;
            if k == 0 {
                return Some(from);
            }
            let (mut a, mut b) = (from + dt * (k - 1) as f64, from + dt * k as f64);
            for _ in 0..100 {
                let m = 0.5 * (a + b);
                if reached(f(m)) {
                    b = m;
                } else {
                    a = m;
                }
            }
            Some(b)
        };
        Crossing {
            already: reached(self.predict(from)),
            earliest_s: first(&near),
            expected_s: first(&|t| self.predict(t)),
            latest_s: first(&far),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Crossing {
    /// The fitted line is already past the threshold at the start.
    pub already: bool,
    pub earliest_s: Option<f64>,
    pub expected_s: Option<f64>,
    pub latest_s: Option<f64>,
}

#[cfg(test)]
mod tests {

    /// Student's t at 97.5%: the table, then the expansion, against published values
    /// (R's qt(0.975, df)): no step at 30 -> 31, and 1.96 only in the limit.
    #[test]
    fn t_quantiles_beyond_the_table_follow_students_t() {
        for (df, want) in [(31, 2.039513), (40, 2.021075), (60, 2.000298), (100, 1.983972), (1000, 1.962339)] {
            assert!((t975(df) - want).abs() < 2e-5, "{df}: {} vs {want}", t975(df));
        }
        assert_eq!(t975(30), 2.042);
        assert!(t975(31) < t975(30) && t975(1_000_000) > 1.95996);
    }
    use super::*;

    #[test]
    fn exact_line_is_recovered_and_crossing_is_exact() {
        // y = 10 + 2 t: crosses 50 at t = 20.
        let pts: Vec<(f64, f64)> = (0..10).map(|t| (t as f64, 10.0 + 2.0 * t as f64)).collect();
        let f = fit(&pts).unwrap();
        assert!((f.slope_per_s - 2.0).abs() < 1e-12 && (f.intercept - 10.0).abs() < 1e-12);
        assert!(f.residual_stddev < 1e-9 && (f.r_squared.unwrap() - 1.0).abs() < 1e-12);
        // A constant series has no variance to explain: no r², not a perfect 1.
        let flat: Vec<(f64, f64)> = (0..10).map(|t| (t as f64, 7.0)).collect();
        let level = fit(&flat).unwrap();
        assert_eq!((level.slope_per_s, level.r_squared), (0.0, None));
        let c = f.crossing(50.0, true, 9.0, 109.0);
        assert!(!c.already);
        let e = c.expected_s.unwrap();
        assert!((e - 20.0).abs() <= 1e-9, "{e}");
        assert!((c.earliest_s.unwrap() - 20.0).abs() <= 1e-6 && (c.latest_s.unwrap() - 20.0).abs() <= 1e-6);
        // The same crossing whatever the horizon searched (it was found on a grid of
        // horizon / 10,000 before).
        for until in [25.0, 1e3, 1e6, 1e9] {
            let e = f.crossing(50.0, true, 9.0, until).expected_s.unwrap();
            assert!((e - 20.0).abs() <= 1e-6, "{until}: {e}");
        }
    }

    #[test]
    fn noise_widens_the_interval_around_the_crossing() {
        // y = t + (+1, −1, +1, ...): slope 1, residuals ±1.
        let pts: Vec<(f64, f64)> =
            (0..20).map(|t| (t as f64, t as f64 + if t % 2 == 0 { 1.0 } else { -1.0 })).collect();
        let f = fit(&pts).unwrap();
        assert!((f.slope_per_s - 1.0).abs() < 0.02);
        let (lo, hi) = f.interval(10.0);
        assert!(lo < f.predict(10.0) && hi > f.predict(10.0));
        // Student t with 18 df is 2.101; s ≈ 1.03: half-width ≈ 2.2.
        assert!((hi - lo) / 2.0 > 2.0 && (hi - lo) / 2.0 < 2.5, "{}", (hi - lo) / 2.0);
        let c = f.crossing(40.0, true, 19.0, 100.0);
        let (a, b, z) = (c.earliest_s.unwrap(), c.expected_s.unwrap(), c.latest_s.unwrap());
        assert!(a < b && b < z, "{a} {b} {z}");
        assert!((b - 40.0).abs() < 1.0);
    }

    #[test]
    fn flat_or_falling_series_never_crosses_upward() {
        let pts: Vec<(f64, f64)> = (0..10).map(|t| (t as f64, 5.0 - 0.1 * t as f64)).collect();
        let f = fit(&pts).unwrap();
        let c = f.crossing(50.0, true, 9.0, 1000.0);
        assert_eq!((c.expected_s, c.already), (None, false));
        // As a floor: falling from 5 reaches 4 at t = 10.
        let c = f.crossing(4.0, false, 9.0, 100.0);
        assert!((c.expected_s.unwrap() - 10.0).abs() < 0.02);
        assert!(fit(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]).is_none());
        assert!(fit(&[(1.0, 1.0)]).is_none());
    }
}
