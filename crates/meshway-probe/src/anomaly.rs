//! Anomalies and change points on a stored series, and a seasonal capacity forecast.
//!
//! The series is split, robustly, into a daily (or any `period`) profile and the rest:
//! 1. a robust trend: the median of pairwise slopes between points half the series apart
//!    (a Theil–Sen estimate on n/2 pairs), so steps and spikes barely move it;
//! 2. a seasonal profile: the median of the detrended values in each phase bin of the period
//!    (24 bins for a day), centred on zero;
//! 3. the deseasonalised series `d = y − season`, and its noise `σ`: 1.4826 × the median
//!    absolute deviation of first differences over √2 (differences cancel level, trend and
//!    steps, so σ is the point-to-point noise alone).
//!
//! A point is an anomaly when it is more than `k σ` (default 5) from the median of the `w`
//! points around it (`w` an hour of points by default). A change point is a step in level:
//! at each time, the median of the `w` points after it minus the median of the `w` before,
//! less what the trend accounts for, over the standard error of a difference of two
//! medians (`1.2533 σ √(2/w)`); a local maximum above `h` (default 8) is a change.
//! The thresholds are assumptions tuned on the synthetic series of the tests (detection and
//! false-alarm rates stated there); medians keep each point's influence bounded.
//!
//! The seasonal forecast fits a least-squares line (with its 95 % prediction interval, see
//! [`crate::forecast`]) to the deseasonalised series and asks when the line plus the
//! season's peak reaches a threshold: "the daily peak reaches 80 % in about 23 days".

use crate::forecast::{self, Crossing, Fit};
use serde::Serialize;

/// Median of a copy of `xs` (NaN-free); 0 for an empty slice.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    let m = v.len() / 2;
    let (_, x, _) = v.select_nth_unstable_by(m, |a, b| a.total_cmp(b));
    let hi = *x;
    if v.len() % 2 == 1 {
        hi
    } else {
        let lo = v[..m].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo + hi) / 2.0
    }
}

/// 1.4826 × the median absolute deviation: the standard deviation for Gaussian data.
pub fn robust_sigma(xs: &[f64]) -> f64 {
    let m = median(xs);
    let dev: Vec<f64> = xs.iter().map(|x| (x - m).abs()).collect();
    1.4826 * median(&dev)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// The season's period in seconds (a day); `None`: no season.
    pub period_s: Option<f64>,
    /// Phase bins per period.
    pub bins: usize,
    /// Points each side of a change and around an anomaly.
    pub window: usize,
    /// Point anomaly threshold in σ.
    pub k: f64,
    /// Change-point threshold in standard errors.
    pub h: f64,
}

impl Options {
    /// A daily season in 48 half-hour bins; windows of two hours of points for a series
    /// sampled every `step_s` seconds (at least 5 points).
    pub fn daily(step_s: f64) -> Options {
        let w = ((7200.0 / step_s.max(1.0)).round() as usize).max(5);
        Options { period_s: Some(86_400.0), bins: 48, window: w, k: 5.0, h: 8.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    pub t: f64,
    pub value: f64,
    /// What the neighbourhood and the season say the value should be.
    pub expected: f64,
    /// (value − expected) / σ.
    pub z: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Time of the first point after the step.
    pub t: f64,
    /// Deseasonalised level before and after (medians of the windows).
    pub before: f64,
    pub after: f64,
    /// Size in standard errors.
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub sigma: f64,
    pub slope_per_s: f64,
    /// The seasonal profile (empty without a season).
    pub season: Vec<f64>,
    pub anomalies: Vec<Anomaly>,
    pub changes: Vec<Change>,
}

/// Robust slope. With a period and at least three of them: Theil–Sen (the median of all
/// pairwise slopes) through the per-period medians, which a step moves for one period only.
/// Otherwise the median of slopes between points `n/2` apart.
fn robust_slope(t: &[f64], y: &[f64], period: Option<f64>) -> f64 {
    let n = t.len();
    if n < 4 {
        return 0.0;
    }
    if let Some(p) = period.filter(|p| *p > 0.0 && t[n - 1] - t[0] >= 3.0 * p) {
        let mut groups: Vec<(f64, Vec<f64>)> = Vec::new();
        for (ti, yi) in t.iter().zip(y) {
            let k = ((ti - t[0]) / p).floor();
            match groups.last_mut() {
                Some((g, v)) if *g == k => v.push(*yi),
                _ => groups.push((k, vec![*yi])),
            }
        }
        // Whole periods only: a partial one would carry part of the season.
        let full = groups.iter().map(|g| g.1.len()).max().unwrap_or(0);
        let pts: Vec<(f64, f64)> =
            groups.iter().filter(|g| g.1.len() * 10 >= full * 9).map(|(k, v)| ((k + 0.5) * p, median(v))).collect();
        if let Some(slope) = theil_sen(&pts).0 {
            return slope;
        }
    }
    let half = n / 2;
    let s: Vec<f64> =
        (0..n - half).filter(|&i| t[i + half] > t[i]).map(|i| (y[i + half] - y[i]) / (t[i + half] - t[i])).collect();
    median(&s)
}

/// The most pairs Theil–Sen takes the median of (an assumption: the median of a sample of
/// 100,000 lies within about 0.3 % in rank, two standard errors, of the median of all
/// pairs). From 448 periods on the pairs are a fixed pseudo-random sample, the same for the same
/// series, so time and memory stay linear in the series (20,160 periods held 203 million).
pub const MAX_THEIL_SEN_PAIRS: usize = 100_000;

/// Theil–Sen through `pts` (times distinct and increasing): the median of the slopes of all
/// pairs, or of [`MAX_THEIL_SEN_PAIRS`] drawn by a seeded generator when there are more;
/// with the number of pairs used. `None` with fewer than two points.
fn theil_sen(pts: &[(f64, f64)]) -> (Option<f64>, usize) {
    let p = pts.len();
    let slope = |i: usize, j: usize| (pts[j].1 - pts[i].1) / (pts[j].0 - pts[i].0);
    let all = p.saturating_mul(p.saturating_sub(1)) / 2;
    let slopes: Vec<f64> = if all <= MAX_THEIL_SEN_PAIRS {
        (0..p).flat_map(|i| (i + 1..p).map(move |j| (i, j))).map(|(i, j)| slope(i, j)).collect()
    } else {
        // splitmix64 with a fixed seed: deterministic, and uniform enough over the pairs.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let n = p as u64;
        (0..MAX_THEIL_SEN_PAIRS)
            .map(|_| {
                // Two distinct indices: the second drawn from the other p - 1.
                let a = (next() % n) as usize;
                let b = (next() % (n - 1)) as usize;
                let b = if b >= a { b + 1 } else { b };
                slope(a.min(b), a.max(b))
            })
            .collect()
    };
    if slopes.is_empty() {
        return (None, 0);
    }
    (Some(median(&slopes)), slopes.len())
}

fn bin(t: f64, period: f64, bins: usize) -> usize {
    let ph = t.rem_euclid(period) / period;
    ((ph * bins as f64) as usize).min(bins - 1)
}

/// The seasonal profile of `(t, y)`, detrended by `slope`.
fn season(t: &[f64], y: &[f64], slope: f64, period: f64, bins: usize) -> Vec<f64> {
    let mut by: Vec<Vec<f64>> = vec![Vec::new(); bins];
    for (ti, yi) in t.iter().zip(y) {
        by[bin(*ti, period, bins)].push(yi - slope * ti);
    }
    let prof: Vec<f64> = by.iter().map(|v| median(v)).collect();
    let filled = by.iter().filter(|v| !v.is_empty()).count().max(1);
    let centre = by.iter().zip(&prof).filter(|(v, _)| !v.is_empty()).map(|(_, p)| p).sum::<f64>() / filled as f64;
    by.iter().zip(&prof).map(|(v, p)| if v.is_empty() { 0.0 } else { p - centre }).collect()
}

/// Deseasonalises `y`: (the series less its season, the profile, the slope).
pub fn deseasonalise(t: &[f64], y: &[f64], o: &Options) -> (Vec<f64>, Vec<f64>, f64) {
    let slope = robust_slope(t, y, o.period_s);
    match o.period_s {
        Some(p) if p > 0.0 && t.last().zip(t.first()).is_some_and(|(l, f)| l - f >= p) => {
            let s = season(t, y, slope, p, o.bins.max(1));
            let d = t.iter().zip(y).map(|(ti, yi)| yi - s[bin(*ti, p, s.len())]).collect();
            (d, s, slope)
        }
        _ => (y.to_vec(), Vec::new(), slope),
    }
}

/// Passes that re-estimate the season without the steps found (see [`analyse`]).
const MAX_SEASON_PASSES: usize = 8;

/// Finds anomalies and change points in a series (times in seconds, increasing).
///
/// A step in level leaks into the seasonal profile: the phase bins after its time of day
/// hold days from both levels, so the profile jumps there and every other day shows a false
/// step at that hour. So, on a series of two periods or more, the changes found are taken out
/// of the series (each its size from its time on) and the season estimated again: each pass
/// takes the strongest new change and every other new one at least 60% as strong (an echo
/// carries at most about half of its step), until no new change is found. After
/// [`MAX_SEASON_PASSES`] passes with changes still coming, or on a shorter series, the plain
/// analysis stands (a half-corrected profile echoes the steps left in it).
pub fn analyse(t: &[f64], y: &[f64], o: &Options) -> Analysis {
    let n = t.len().min(y.len());
    let (t, y) = (&t[..n], &y[..n]);
    let pass = |steps: &[(f64, f64)]| {
        let adjusted: Vec<f64> = t
            .iter()
            .zip(y)
            .map(|(ti, yi)| yi - steps.iter().filter(|(at, _)| ti >= at).map(|(_, size)| size).sum::<f64>())
            .collect();
        let (_, season, slope) = deseasonalise(t, &adjusted, o);
        let d: Vec<f64> = match o.period_s {
            Some(p) if !season.is_empty() => {
                t.iter().zip(y).map(|(ti, yi)| yi - season[bin(*ti, p, season.len())]).collect()
            }
            _ => y.to_vec(),
        };
        detect(t, y, d, season, slope, o)
    };
    let plain = pass(&[]);
    let two_periods = o.period_s.is_some_and(|p| p > 0.0 && n > 1 && t[n - 1] - t[0] >= 2.0 * p);
    if plain.season.is_empty() || plain.changes.is_empty() || !two_periods {
        return plain;
    }
    let span = t[o.window.max(2).min(n - 1)] - t[0];
    let mut steps: Vec<(f64, f64)> = Vec::new();
    let mut a = plain.clone();
    for passes in 0..=MAX_SEASON_PASSES {
        let new: Vec<&Change> =
            a.changes.iter().filter(|c| !steps.iter().any(|(at, _)| (c.t - at).abs() <= span)).collect();
        let Some(top) = new.iter().map(|c| c.score.abs()).max_by(f64::total_cmp) else {
            return a;
        };
        if passes == MAX_SEASON_PASSES {
            break;
        }
        steps.extend(new.iter().filter(|c| c.score.abs() >= 0.6 * top).map(|c| (c.t, c.after - c.before)));
        a = pass(&steps);
    }
    plain
}

/// [`analyse`] on the deseasonalised series `d` of `y`.
fn detect(t: &[f64], y: &[f64], d: Vec<f64>, season: Vec<f64>, slope: f64, o: &Options) -> Analysis {
    let n = t.len();
    let diffs: Vec<f64> = d.windows(2).map(|w| w[1] - w[0]).collect();
    let med_diff = median(&diffs);
    let centred: Vec<f64> = diffs.iter().map(|x| x - med_diff).collect();
    let sigma = (robust_sigma(&centred) / std::f64::consts::SQRT_2).max(1e-12);
    let w = o.window.max(2);
    let mut anomalies = Vec::new();
    let mut changes = Vec::new();
    if n < 2 * w + 1 {
        return Analysis { sigma, slope_per_s: slope, season, anomalies, changes };
    }
    // Point anomalies: against the median of the neighbourhood (the point itself left out).
    for i in 0..n {
        let (lo, hi) = (i.saturating_sub(w), (i + w + 1).min(n));
        let around: Vec<f64> = (lo..hi).filter(|&j| j != i).map(|j| d[j] - slope * (t[j] - t[i])).collect();
        let m = median(&around);
        let z = (d[i] - m) / sigma;
        if z.abs() > o.k {
            anomalies.push(Anomaly { t: t[i], value: y[i], expected: y[i] - (d[i] - m), z });
        }
    }
    // Change points: two-window median difference, trend removed, in standard errors.
    let se = 1.2533 * sigma * (2.0 / w as f64).sqrt();
    let mut score = vec![0.0; n];
    let mut lv = vec![(0.0, 0.0); n];
    for i in w..=n - w {
        let before = median(&d[i - w..i]);
        let after = median(&d[i..i + w]);
        let dt = median(&t[i..i + w]) - median(&t[i - w..i]);
        score[i] = (after - before - slope * dt) / se;
        lv[i] = (before, after);
    }
    let mut i = w;
    while i <= n - w {
        let s = score[i].abs();
        if s > o.h {
            // The local maximum within the next w points.
            let end = (i + w).min(n - w);
            let best = (i..=end).max_by(|&a, &b| score[a].abs().total_cmp(&score[b].abs())).unwrap_or(i);
            changes.push(Change { t: t[best], before: lv[best].0, after: lv[best].1, score: score[best] });
            i = best + w;
        } else {
            i += 1;
        }
    }
    // A point next to a step is not an anomaly of its own.
    anomalies.retain(|a| !changes.iter().any(|c| (a.t - c.t).abs() <= (t[w] - t[0])));
    Analysis { sigma, slope_per_s: slope, season, anomalies, changes }
}

/// Options for deciding online, once a minute, whether a series of 1-minute points is
/// anomalous now: a daily season, windows of 15 points.
pub fn online_options() -> Options {
    Options { period_s: Some(86_400.0), bins: 48, window: 15, k: 5.0, h: 8.0 }
}

/// Whether the end of the series is anomalous for the worse: a level change within the last
/// two windows that moved up (`higher_is_worse`) or down, or one of the last three points an
/// outlier on that side.
pub fn anomalous_now(t: &[f64], y: &[f64], o: &Options, higher_is_worse: bool) -> bool {
    let n = t.len().min(y.len());
    if n < 2 * o.window + 1 {
        return false;
    }
    let a = analyse(&t[..n], &y[..n], o);
    let worse = |delta: f64| if higher_is_worse { delta > 0.0 } else { delta < 0.0 };
    let recent = t[n.saturating_sub(2 * o.window)];
    a.changes.iter().any(|c| c.t >= recent && worse(c.after - c.before))
        || a.anomalies.iter().any(|x| x.t >= t[n - 3.min(n)] && worse(x.z))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeasonalForecast {
    /// The line through the deseasonalised series.
    pub fit: Fit,
    /// The season's highest (for a rising threshold) or lowest value over the line.
    pub season_extreme: f64,
    pub crossing: Crossing,
}

/// When the season's peak (or trough, for a floor) reaches `threshold`, searching from the
/// last point to `horizon_s` after it. `None` with fewer than 3 points.
pub fn seasonal_forecast(
    t: &[f64],
    y: &[f64],
    o: &Options,
    threshold: f64,
    rising: bool,
    horizon_s: f64,
) -> Option<SeasonalForecast> {
    let (d, season, _) = deseasonalise(t, y, o);
    let pts: Vec<(f64, f64)> = t.iter().copied().zip(d).collect();
    let fit = forecast::fit(&pts)?;
    let extreme = if season.is_empty() {
        0.0
    } else if rising {
        season.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    } else {
        season.iter().copied().fold(f64::INFINITY, f64::min)
    };
    let last = *t.last()?;
    let crossing = fit.crossing(threshold - extreme, rising, last, last + horizon_s);
    Some(SeasonalForecast { fit, season_extreme: extreme, crossing })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_sigma() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(robust_sigma(&[1.0, 1.0, 1.0]), 0.0);
        // MAD of 1..=5 is 1.
        assert!((robust_sigma(&[1.0, 2.0, 3.0, 4.0, 5.0]) - 1.4826).abs() < 1e-12);
    }

    /// Past 100,000 pairs Theil–Sen takes a fixed sample of them: the same slope every time,
    /// close to the slope of all pairs.
    #[test]
    fn theil_sen_samples_pairs_past_its_bound() {
        // A noisy line of slope 2 with a step a third of the way: deterministic noise.
        let pts = |p: usize| -> Vec<(f64, f64)> {
            (0..p)
                .map(|i| {
                    let x = i as f64;
                    let noise = ((i * 7919) % 1000) as f64 / 100.0 - 5.0;
                    (x, 2.0 * x + noise + if i > p / 3 { 40.0 } else { 0.0 })
                })
                .collect()
        };
        let small = pts(447); // 99,681 pairs: all of them
        assert_eq!(theil_sen(&small).1, 447 * 446 / 2);
        let big = pts(2_000); // 1,999,000 pairs: a sample
        let (sampled, used) = theil_sen(&big);
        assert_eq!(used, MAX_THEIL_SEN_PAIRS);
        assert_eq!(sampled, theil_sen(&big).0, "deterministic");
        let all: Vec<f64> = (0..2_000)
            .flat_map(|i| (i + 1..2_000).map(move |j| (i, j)))
            .map(|(i, j)| (big[j].1 - big[i].1) / (j - i) as f64)
            .collect();
        let exact = median(&all);
        let sampled = sampled.unwrap();
        assert!((sampled - exact).abs() < 0.002, "sampled {sampled}, all pairs {exact}");
        assert!((exact - 2.0).abs() < 0.05, "{exact}");
        assert_eq!(theil_sen(&big[..1]), (None, 0));
    }

    #[test]
    fn a_flat_series_has_nothing_to_say() {
        let t: Vec<f64> = (0..100).map(f64::from).collect();
        let y = vec![5.0; 100];
        let a = analyse(&t, &y, &Options { period_s: None, bins: 1, window: 5, k: 5.0, h: 8.0 });
        assert!(a.anomalies.is_empty() && a.changes.is_empty());
        let short = analyse(&t[..3], &y[..3], &Options::daily(60.0));
        assert!(short.changes.is_empty());
    }
}
