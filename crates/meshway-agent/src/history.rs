//! `meshway history`: reads the agent's database: series from rollups (or raw samples), a
//! summary of the window from raw samples, and a trend forecast.

use crate::store::{Rollup, Store, HOUR_NS, MINUTE_NS};
use meshway_probe::anomaly;
use meshway_probe::forecast::{self, Crossing, Fit};
use meshway_probe::objective::{Metric, StatsOf, WindowStats};
use serde::Serialize;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HistoryError {
    #[error("cannot open database {path}: {hint}")]
    Open {
        path: String,
        hint: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database query failed")]
    Query(#[from] rusqlite::Error),
    #[error(
        "{path}: a query failed (a database that is not the agent's, a damaged one, or one locked by another process)"
    )]
    QueryAt {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("unknown target {name:?}; the database has: {known}")]
    UnknownTarget { name: String, known: String },
    #[error("{name:?} is an {kind} target: its samples are in its series ({series}); give one of them as --target")]
    ParentTarget { name: String, kind: String, series: String },
    #[error("not enough points to forecast ({n}; need at least 3 with values)")]
    TooFewPoints { n: usize },
    #[error("{n} samples in the span: --step raw lists at most {max} (each is a row); narrow --since/--until or use --step 1m")]
    TooManyRaw { n: u64, max: u64 },
    #[error("target {target:?} has samples but no {metric} values: round-trip metrics are for probe targets, utilization, error-ratio, drop-ratio and rx-power for interface and optics series")]
    NoValues { target: String, metric: &'static str },
}

/// Samples `--step raw` lists at most: each is a row of output and about 150 bytes held
/// (an assumption: a day at one a second is 86,400; a million is 12 days of it).
pub const MAX_RAW: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Raw,
    Minute,
    Hour,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The rollup's own `start_ns` carries it in JSON (written here too, the key came twice).
    #[serde(skip)]
    pub start_ns: u64,
    pub value: Option<f64>,
    #[serde(flatten)]
    pub rollup: Rollup,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastReport {
    pub threshold: f64,
    pub fit: Fit,
    /// Unix ns of the crossing: the interval's near edge, the line, the far edge.
    pub earliest_ns: Option<u64>,
    pub expected_ns: Option<u64>,
    pub latest_ns: Option<u64>,
    pub already_past: bool,
    pub horizon_ns: u64,
    /// With a season: the threshold is reached by the line plus this (the season's peak for a
    /// ceiling, its trough for a floor); the line is fitted to the deseasonalised series.
    pub season_extreme: Option<f64>,
}

/// A point that stands out of its neighbourhood (in the metric's unit).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnomalyPoint {
    pub at_ns: u64,
    pub value: f64,
    pub expected: f64,
    pub z: f64,
}

/// A step in the series' level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangePoint {
    pub at_ns: u64,
    pub before: f64,
    pub after: f64,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnomalyReport {
    pub season_s: Option<f64>,
    pub window_points: usize,
    /// Point-to-point noise (robust).
    pub sigma: f64,
    pub points: Vec<AnomalyPoint>,
    pub changes: Vec<ChangePoint>,
}

/// Median spacing of the series' points in seconds.
fn spacing(ts: &[f64]) -> f64 {
    let d: Vec<f64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
    anomaly::median(&d).max(1e-3)
}

/// Anomalies and change points of `series` (times as unix seconds so the season is aligned to
/// UTC days).
pub fn anomalies(series: &[Point], season_s: Option<f64>) -> AnomalyReport {
    let (t, y): (Vec<f64>, Vec<f64>) =
        series.iter().filter_map(|p| p.value.map(|v| (p.start_ns as f64 / 1e9, v))).unzip();
    let mut o = anomaly::Options::daily(spacing(&t));
    o.period_s = season_s;
    let a = anomaly::analyse(&t, &y, &o);
    let ns = |s: f64| (s * 1e9) as u64;
    AnomalyReport {
        season_s,
        window_points: o.window,
        sigma: a.sigma,
        points: a
            .anomalies
            .iter()
            .map(|x| AnomalyPoint { at_ns: ns(x.t), value: x.value, expected: x.expected, z: x.z })
            .collect(),
        changes: a
            .changes
            .iter()
            .map(|c| ChangePoint { at_ns: ns(c.t), before: c.before, after: c.after, score: c.score })
            .collect(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryReport {
    pub target: String,
    pub metric: Metric,
    pub from_ns: u64,
    pub to_ns: u64,
    pub step: Step,
    /// Over the whole window, from raw samples (when retention still holds them).
    pub summary: WindowStats,
    pub series: Vec<Point>,
    pub forecast: Option<ForecastReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomalies: Option<AnomalyReport>,
    /// Rollup rows and raw samples left out as impossible (see `Store::rollups_checked`; a
    /// negative round trip, a value not finite or beyond 1e18).
    pub implausible_rows: u64,
}

/// The value of `metric` in one rollup (nanoseconds, a ratio, or bits per second).
pub fn rollup_value(r: &Rollup, m: Metric) -> Option<f64> {
    match m {
        Metric::RttP50 => r.p50_ns.map(|v| v as f64),
        Metric::RttP90 => r.p90_ns.map(|v| v as f64),
        Metric::RttP99 => r.p99_ns.map(|v| v as f64),
        Metric::RttMean => r.mean_ns,
        Metric::JitterRfc3550 => r.jitter_ns,
        Metric::Loss => (r.sent > 0).then(|| r.lost as f64 / r.sent as f64),
        // A failed perf run (a loss without any RTT) moved nothing: zero, as the agent's
        // objective counts it.
        Metric::ThroughputMin if r.lost > 0 && r.p50_ns.is_none() => Some(0.0),
        Metric::ThroughputMin => r.value_min,
        // Interface and optics series store one value per poll interval.
        Metric::Utilization
        | Metric::ErrorRatio
        | Metric::DropRatio
        | Metric::OpticsLevel
        | Metric::Anomaly
        | Metric::RxPower => r.value_mean,
    }
}

/// Opens the agent's database read-only, with a hint that fits what went wrong.
fn open(db: &Path) -> Result<Store, HistoryError> {
    Store::open_read_only(db).map_err(|source| HistoryError::Open {
        path: db.display().to_string(),
        hint: match source.sqlite_error_code() {
            _ if !db.exists() => {
                "give --db with the agent's database ([agent] database in its configuration; `meshway agent --config FILE` creates it)"
            }
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
                "it is not a meshway agent database, or a damaged one"
            }
            Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::PermissionDenied) => {
                "it cannot be opened: check its permissions and its directory's (SQLite also needs to read the -wal and -shm files beside it)"
            }
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                "it is busy: another process holds it locked"
            }
            _ => "see the cause below",
        },
        source,
    })
}

/// Runs `f` on the database `db`, opened read-only; a query that fails is named with it.
fn on<T>(db: &Path, f: impl FnOnce(Store) -> Result<T, HistoryError>) -> Result<T, HistoryError> {
    open(db).and_then(f).map_err(|e| match e {
        HistoryError::Query(source) => HistoryError::QueryAt { path: db.display().to_string(), source },
        e => e,
    })
}

/// One stored series, as `history` without `--target` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetEntry {
    pub target: String,
    pub kind: String,
    pub samples: u64,
}

/// An interface or optics target's own entry: its data is in its series
/// (`TARGET/INTERFACE/utilization`, `TARGET/MODULE/rx-power/laneN`), never under its name.
fn is_parent(name: &str, kind: &str) -> bool {
    matches!(kind, "interface" | "optics") && !name.contains('/')
}

/// The stored series and their sample counts. Interface and optics targets are listed by
/// their series, not by their own entries, which hold no samples.
pub fn targets(db: &Path) -> Result<Vec<TargetEntry>, HistoryError> {
    on(db, |s| {
        let mut out = Vec::new();
        for (target, kind) in s.target_kinds()? {
            if is_parent(&target, &kind) {
                continue;
            }
            let id = s.id(&target).unwrap_or(0);
            out.push(TargetEntry { samples: s.target_sample_count(id)?, target, kind });
        }
        Ok(out)
    })
}

/// What `history --target` shows unless `--metric` says: an optics series' receive power, an
/// interface series' ratio (by its name), a perf target's throughput, else the RTT p99 (also
/// when the database cannot be read: the query then says why).
pub fn default_metric(db: &Path, target: &str) -> Metric {
    if target.contains("/rx-power/") {
        return Metric::RxPower;
    }
    match target.rsplit('/').next() {
        Some("utilization") => return Metric::Utilization,
        Some("error-ratio") => return Metric::ErrorRatio,
        Some("drop-ratio") => return Metric::DropRatio,
        _ => {}
    }
    let perf = on(db, |s| Ok(s.target_kinds()?.iter().any(|(n, k)| n == target && k == "perf")));
    if perf.unwrap_or(false) {
        Metric::ThroughputMin
    } else {
        Metric::RttP99
    }
}

/// Queries one target's `metric` over `[from, to)`.
#[allow(clippy::too_many_arguments)]
pub fn query(
    db: &Path,
    target: &str,
    metric: Metric,
    from_ns: u64,
    to_ns: u64,
    step: Step,
    forecast_threshold: Option<f64>,
    horizon_ns: u64,
    season_s: Option<f64>,
    want_anomalies: bool,
) -> Result<HistoryReport, HistoryError> {
    let w = (forecast_threshold, horizon_ns, season_s, want_anomalies);
    query_limited(db, target, metric, from_ns, to_ns, step, w, MAX_RAW)
}

/// [`query`] with `max_raw` in place of [`MAX_RAW`].
#[allow(clippy::too_many_arguments)]
fn query_limited(
    db: &Path,
    target: &str,
    metric: Metric,
    from_ns: u64,
    to_ns: u64,
    step: Step,
    (forecast_threshold, horizon_ns, season_s, want_anomalies): (Option<f64>, u64, Option<f64>, bool),
    max_raw: u64,
) -> Result<HistoryReport, HistoryError> {
    on(db, |s| {
        let id = s
            .id(target)
            .ok_or_else(|| HistoryError::UnknownTarget { name: target.into(), known: s.targets().join(", ") })?;
        if let Some((_, kind)) = s.target_kinds()?.into_iter().find(|(n, k)| n == target && is_parent(n, k)) {
            let prefix = format!("{target}/");
            let series: Vec<String> = s.targets().into_iter().filter(|n| n.starts_with(&prefix)).collect();
            return Err(HistoryError::ParentTarget {
                name: target.into(),
                kind,
                series: if series.is_empty() { "none yet".into() } else { series.join(", ") },
            });
        }
        // The summary streams the raw samples into a histogram: a span of months holds
        // millions, and only the raw series keeps each.
        let mut acc = StatsOf::default();
        acc.after(s.rtts_before(id, from_ns)?);
        let mut raw = Vec::new();
        // A throughput below 0 cannot be (an rx power in dBm can): a perf target's is left out.
        let perf = s.target_kinds()?.iter().any(|(n, k)| n == target && k == "perf");
        let mut negative = 0u64;
        let (n, bad_samples) = s.each_sample_checked(id, from_ns, to_ns, |x| {
            if perf && x.value.is_some_and(|v| v < 0.0) {
                negative += 1;
                return;
            }
            acc.push(x);
            if step == Step::Raw && (raw.len() as u64) < max_raw {
                raw.push(Rollup::of(x.at_ns, std::slice::from_ref(&x)));
            }
        })?;
        if step == Step::Raw && n > max_raw {
            return Err(HistoryError::TooManyRaw { n, max: max_raw });
        }
        let summary = acc.finish();
        let (rollups, implausible_rows): (Vec<Rollup>, u64) = match step {
            Step::Raw => (raw, 0),
            Step::Minute => s.rollups_checked(id, false, from_ns - from_ns % MINUTE_NS, to_ns)?,
            Step::Hour => s.rollups_checked(id, true, from_ns - from_ns % HOUR_NS, to_ns)?,
        };
        let series: Vec<Point> = rollups
            .into_iter()
            .map(|r| Point { start_ns: r.start_ns, value: rollup_value(&r, metric), rollup: r })
            .collect();
        // A metric of the other kind of series (utilization of a probe target, RTT of an
        // interface) has no values at all: say so rather than print a column of "-".
        // No rollup rows yet (a perf target's first minute or hour) is an empty series, as it
        // is for any target, not a metric of the wrong kind.
        if n > 0 && !series.is_empty() && series.iter().all(|p| p.value.is_none()) && !matches!(metric, Metric::Loss) {
            let probe_metric = matches!(
                metric,
                Metric::RttP50 | Metric::RttP90 | Metric::RttP99 | Metric::RttMean | Metric::JitterRfc3550
            );
            let any_value = series.iter().any(|p| p.rollup.value_mean.is_some() || p.rollup.p50_ns.is_some());
            if any_value || !probe_metric {
                return Err(HistoryError::NoValues { target: target.into(), metric: metric.name() });
            }
        }
        let forecast = match forecast_threshold {
            None => None,
            Some(threshold) => {
                let pts: Vec<(f64, f64)> =
                    // Signed: the first hour or minute bucket may start before `from_ns`.
                    series.iter().filter_map(|p| p.value.map(|v| ((p.start_ns as f64 - from_ns as f64) / 1e9, v))).collect();
                let span = pts.last().map_or(0.0, |p| p.0) - pts.first().map_or(0.0, |p| p.0);
                let seasonal = season_s.filter(|p| span >= 2.0 * p);
                let (fit, c, season_extreme) = match seasonal {
                    // Two periods or more: the line through the deseasonalised series, and when
                    // the season's extreme on top of it reaches the threshold.
                    Some(p) => {
                        let (t, y): (Vec<f64>, Vec<f64>) = pts.iter().copied().unzip();
                        let mut o = anomaly::Options::daily(spacing(&t));
                        o.period_s = Some(p);
                        let f = anomaly::seasonal_forecast(
                            &t,
                            &y,
                            &o,
                            threshold,
                            !metric.is_floor(),
                            horizon_ns as f64 / 1e9,
                        )
                        .ok_or(HistoryError::TooFewPoints { n: t.len() })?;
                        (f.fit, f.crossing, Some(f.season_extreme))
                    }
                    None => {
                        let fit = forecast::fit(&pts).ok_or(HistoryError::TooFewPoints { n: pts.len() })?;
                        let last = pts.last().map_or(0.0, |p| p.0);
                        let until = last + horizon_ns as f64 / 1e9;
                        let c: Crossing = fit.crossing(threshold, !metric.is_floor(), last, until);
                        (fit, c, None)
                    }
                };
                let at = |t: Option<f64>| t.map(|t| from_ns + (t * 1e9) as u64);
                Some(ForecastReport {
                    threshold,
                    earliest_ns: at(c.earliest_s),
                    expected_ns: at(c.expected_s),
                    latest_ns: at(c.latest_s),
                    already_past: c.already,
                    horizon_ns,
                    fit,
                    season_extreme,
                })
            }
        };
        let anomalies = want_anomalies.then(|| anomalies(&series, season_s));
        Ok(HistoryReport {
            target: target.into(),
            metric,
            from_ns,
            to_ns,
            step,
            summary,
            series,
            forecast,
            anomalies,
            implausible_rows: implausible_rows + bad_samples + negative,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use meshway_probe::objective::Sample;

    /// A fresh database under the temp dir holding `samples` of one target, rolled up.
    pub(crate) fn temp_db(tag: &str, target: &str, kind: &str, samples: &[Sample]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("meshway-history-{tag}-{}.db", std::process::id()));
        remove_db(&p);
        let mut s = Store::open(&p).unwrap();
        let id = s.target_id(target, kind, "127.0.0.1:5301").unwrap();
        let batch: Vec<(i64, Sample)> = samples.iter().map(|x| (id, *x)).collect();
        s.insert(&batch).unwrap();
        let end = samples.last().map_or(0, |x| x.at_ns + 1);
        s.rollup(0, end).unwrap();
        p
    }

    pub(crate) fn remove_db(p: &Path) {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
        }
    }

    /// A perf target's six passed runs and three failed ones: nine probes, three lost; the
    /// minute's throughput floor reads zero (a failed run moved nothing).
    #[test]
    fn perf_runs_that_pass_are_sent_and_failed_ones_lost() {
        let runs: Vec<Sample> = (0..9u64)
            .map(|k| Sample { at_ns: MINUTE_NS + k * 1_000_000_000, rtt_ns: None, value: (k < 6).then_some(100e6) })
            .collect();
        let p = temp_db("perf", "p", "perf", &runs);
        let q = |m: Metric| query(&p, "p", m, 0, 3 * MINUTE_NS, Step::Minute, None, 0, None, false);
        let loss = q(Metric::Loss);
        let tput = q(Metric::ThroughputMin);
        remove_db(&p);
        let loss = loss.unwrap();
        assert_eq!((loss.summary.sent, loss.summary.lost), (9, 3));
        assert_eq!(loss.series.len(), 1);
        assert_eq!((loss.series[0].rollup.sent, loss.series[0].rollup.lost), (9, 3));
        assert!((loss.series[0].value.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        let tput = tput.unwrap();
        assert_eq!(tput.series[0].value, Some(0.0));
        assert_eq!(tput.series[0].rollup.value_min, Some(100e6));
    }

    /// A perf run of 1e308 b/s or below 0 is left out and counted, not shown as 18 million
    /// Tb/s or 0 b/s.
    #[test]
    fn impossible_samples_are_left_out_and_counted() {
        let mut runs: Vec<Sample> = (0..6u64)
            .map(|k| Sample { at_ns: MINUTE_NS + k * 1_000_000_000, rtt_ns: None, value: Some(100e6) })
            .collect();
        runs.push(Sample { at_ns: MINUTE_NS + 6_000_000_000, rtt_ns: None, value: Some(1e308) });
        runs.push(Sample { at_ns: MINUTE_NS + 7_000_000_000, rtt_ns: None, value: Some(-1e9) });
        let p = temp_db("absurd", "p", "perf", &runs);
        let r = query(&p, "p", Metric::ThroughputMin, 0, 3 * MINUTE_NS, Step::Raw, None, 0, None, false);
        remove_db(&p);
        let r = r.unwrap();
        assert_eq!((r.summary.sent, r.implausible_rows), (6, 2));
        assert!(r.series.iter().all(|x| x.value == Some(100e6)), "{:?}", r.series);
    }

    /// Before its first rollup a perf target has an empty series at --step 1m, not "no
    /// throughput values" (its raw samples hold them); a point's JSON names `start_ns` once.
    #[test]
    fn a_perf_target_before_its_first_rollup_has_an_empty_series() {
        let p = std::env::temp_dir().join(format!("meshway-history-unrolled-{}.db", std::process::id()));
        remove_db(&p);
        let mut s = Store::open(&p).unwrap();
        let id = s.target_id("bulk", "perf", "127.0.0.1:5201").unwrap();
        s.insert(&[(id, Sample { at_ns: MINUTE_NS + 1, rtt_ns: None, value: Some(16e9) })]).unwrap();
        drop(s);
        let minute = query(&p, "bulk", Metric::ThroughputMin, 0, 2 * MINUTE_NS, Step::Minute, None, 0, None, false);
        let raw = query(&p, "bulk", Metric::ThroughputMin, 0, 2 * MINUTE_NS, Step::Raw, None, 1000, None, false);
        remove_db(&p);
        let minute = minute.unwrap();
        assert_eq!(minute.summary.sent, 1);
        assert!(minute.series.is_empty());
        let raw = raw.unwrap();
        assert_eq!(raw.series[0].value, Some(16e9));
        let json = serde_json::to_string(&raw.series[0]).unwrap();
        assert_eq!(json.matches("\"start_ns\"").count(), 1, "{json}");
        assert!(json.contains(&format!("\"start_ns\":{}", MINUTE_NS + 1)), "{json}");
    }

    /// The list names series with data, not an interface target's own (empty) entry; a perf
    /// target's default metric is its throughput; the interface target itself names its
    /// series when queried.
    #[test]
    fn targets_list_series_and_perf_defaults_to_throughput() {
        let runs: Vec<Sample> = (0..4u64)
            .map(|k| Sample { at_ns: MINUTE_NS + k * 1_000_000_000, rtt_ns: None, value: Some(5e8) })
            .collect();
        let p = temp_db("list", "bulk", "perf", &runs);
        let mut s = Store::open(&p).unwrap();
        s.target_id("ifs", "interface", "lo").unwrap();
        let u = s.target_id("ifs/lo/utilization", "interface", "lo").unwrap();
        s.insert(&[(u, Sample { at_ns: MINUTE_NS, rtt_ns: None, value: Some(0.25) })]).unwrap();
        drop(s);
        let list = targets(&p);
        let metric = default_metric(&p, "bulk");
        let tput = query(&p, "bulk", Metric::ThroughputMin, 0, 2 * MINUTE_NS, Step::Minute, None, 0, None, false);
        let parent = query(&p, "ifs", Metric::RttP99, 0, 2 * MINUTE_NS, Step::Minute, None, 0, None, false);
        remove_db(&p);
        let list: Vec<(String, String, u64)> =
            list.unwrap().into_iter().map(|t| (t.target, t.kind, t.samples)).collect();
        assert_eq!(list, vec![("bulk".into(), "perf".into(), 4), ("ifs/lo/utilization".into(), "interface".into(), 1)]);
        assert_eq!(metric, Metric::ThroughputMin);
        assert_eq!(tput.unwrap().series[0].value, Some(5e8));
        let e = parent.unwrap_err().to_string();
        assert_eq!(
            e,
            "\"ifs\" is an interface target: its samples are in its series (ifs/lo/utilization); give one of them as --target"
        );
    }

    /// `--step raw` lists every sample up to its limit, and past it refuses with the count
    /// instead of holding them all.
    #[test]
    fn raw_series_are_bounded() {
        let samples: Vec<Sample> = (0..20u64)
            .map(|k| Sample { at_ns: 1_000_000_000 + k * 1_000_000_000, rtt_ns: Some(1_000_000), value: None })
            .collect();
        let p = temp_db("raw", "t", "udp", &samples);
        let q = |max: u64| {
            query_limited(&p, "t", Metric::RttP50, 0, 100_000_000_000, Step::Raw, (None, 0, None, false), max)
        };
        let ok = q(20).map(|r| r.series.len());
        let over = q(19).err().map(|e| e.to_string());
        remove_db(&p);
        assert_eq!(ok.unwrap(), 20);
        let e = over.unwrap();
        assert!(e.contains("20 samples in the span: --step raw lists at most 19"), "{e}");
    }
}
