//! Objectives over sliding windows and alert state with hysteresis. Pure: samples carry their
//! time, evaluation takes `now`.
//!
//! An objective is one metric of a target's samples in the last `window` compared with a
//! threshold: RTT percentiles and mean, RFC 3550 jitter and loss ratio must stay at or below
//! it; throughput must stay at or above it. An alert fires after `fire_after` consecutive
//! violated evaluations and resolves after `resolve_after` consecutive met evaluations, so a
//! value hovering at the threshold does not flap. A window without samples is not evaluated.
//!
//! Throughput probes (perf runs) count like other probes: every run is sent, a run that
//! failed (a sample with neither RTT nor value) is lost, and for `throughput-min` a failed run
//! counts as zero throughput, so a window whose runs all fail violates the floor.

use crate::stats::{DelayStats, Summary};
use serde::Serialize;
use std::collections::VecDeque;

/// One measurement: an RTT, a loss or failed run (`rtt_ns` and `value` both `None`), or a
/// throughput value (an answered probe).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at_ns: u64,
    pub rtt_ns: Option<u64>,
    /// Throughput in bits per second, for throughput probes.
    pub value: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    RttP50,
    RttP90,
    RttP99,
    RttMean,
    JitterRfc3550,
    Loss,
    ThroughputMin,
    /// Interfaces: the busier direction's rate over the link speed.
    Utilization,
    /// Interfaces: errors over packets.
    ErrorRatio,
    /// Interfaces: drops and misses over packets plus those drops.
    DropRatio,
    /// Optical modules: the worst level among their warnings and alarms (0 ok, 1 warning,
    /// 2 alarm); thresholds 0.5 (alert on warnings) or 1.5 (on alarms).
    OpticsLevel,
    /// The target's stored series (RTT median, throughput or utilization per minute) shows a
    /// level change or an outlier for the worse now: 1, else 0; threshold 0.5.
    Anomaly,
    /// Optical modules: received power in dBm, a stored series (a floor: low is bad).
    RxPower,
}

impl Metric {
    pub const ALL: [Metric; 13] = [
        Metric::RttP50,
        Metric::RttP90,
        Metric::RttP99,
        Metric::RttMean,
        Metric::JitterRfc3550,
        Metric::Loss,
        Metric::ThroughputMin,
        Metric::Utilization,
        Metric::ErrorRatio,
        Metric::DropRatio,
        Metric::OpticsLevel,
        Metric::Anomaly,
        Metric::RxPower,
    ];

    /// The config key and label value.
    pub fn name(self) -> &'static str {
        match self {
            Metric::RttP50 => "rtt-p50",
            Metric::RttP90 => "rtt-p90",
            Metric::RttP99 => "rtt-p99",
            Metric::RttMean => "rtt-mean",
            Metric::JitterRfc3550 => "jitter",
            Metric::Loss => "loss",
            Metric::ThroughputMin => "throughput-min",
            Metric::Utilization => "utilization",
            Metric::ErrorRatio => "error-ratio",
            Metric::DropRatio => "drop-ratio",
            Metric::OpticsLevel => "optics",
            Metric::Anomaly => "anomaly",
            Metric::RxPower => "rx-power",
        }
    }

    /// Higher is better (a floor) rather than lower is better (a ceiling).
    pub fn is_floor(self) -> bool {
        matches!(self, Metric::ThroughputMin | Metric::RxPower)
    }

    /// A ratio (loss, utilization, error and drop ratios) rather than a time or a rate.
    pub fn is_ratio(self) -> bool {
        matches!(self, Metric::Loss | Metric::Utilization | Metric::ErrorRatio | Metric::DropRatio)
    }

    /// Measured on interface counters rather than by probes.
    pub fn is_interface(self) -> bool {
        matches!(self, Metric::Utilization | Metric::ErrorRatio | Metric::DropRatio)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    pub metric: Metric,
    /// Nanoseconds for RTT and jitter, a ratio for loss, bits per second for throughput.
    pub threshold: f64,
    pub window_ns: u64,
}

/// What a window of samples says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowStats {
    pub sent: u64,
    pub lost: u64,
    pub loss_ratio: f64,
    pub rtt: Option<Summary>,
    /// The lowest throughput of the runs that passed (failed runs are in `lost`).
    pub throughput_min_bps: Option<f64>,
}

impl WindowStats {
    /// The value of `m`, `None` when the window has nothing to say about it.
    pub fn value(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::Loss => (self.sent > 0).then_some(self.loss_ratio),
            Metric::RttP50 => self.rtt.as_ref().map(|r| r.p50_ns as f64),
            Metric::RttP90 => self.rtt.as_ref().map(|r| r.p90_ns as f64),
            Metric::RttP99 => self.rtt.as_ref().map(|r| r.p99_ns as f64),
            Metric::RttMean => self.rtt.as_ref().map(|r| r.mean_ns),
            Metric::JitterRfc3550 => self.rtt.as_ref().map(|r| r.jitter_rfc3550_ns),
            // A failed run moved nothing: zero throughput (only perf targets have this objective).
            Metric::ThroughputMin if self.lost > 0 => Some(0.0),
            Metric::ThroughputMin => self.throughput_min_bps,
            Metric::Utilization
            | Metric::ErrorRatio
            | Metric::DropRatio
            | Metric::OpticsLevel
            | Metric::Anomaly
            | Metric::RxPower => None,
        }
    }
}

/// A [`Sample`] packed into 24 bytes (instead of 40): windows of many targets stay small.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Slot {
    at_ns: u64,
    /// The RTT, or the throughput's `f64` bits.
    x: u64,
    /// 0: RTT in `x`; 1: lost; 2: throughput in `x`.
    tag: u8,
}

impl Slot {
    fn pack(s: Sample) -> Slot {
        match (s.value, s.rtt_ns) {
            (Some(v), _) => Slot { at_ns: s.at_ns, x: v.to_bits(), tag: 2 },
            (None, Some(r)) => Slot { at_ns: s.at_ns, x: r, tag: 0 },
            (None, None) => Slot { at_ns: s.at_ns, x: 0, tag: 1 },
        }
    }

    fn unpack(self) -> Sample {
        match self.tag {
            0 => Sample { at_ns: self.at_ns, rtt_ns: Some(self.x), value: None },
            2 => Sample { at_ns: self.at_ns, rtt_ns: None, value: Some(f64::from_bits(self.x)) },
            _ => Sample { at_ns: self.at_ns, rtt_ns: None, value: None },
        }
    }
}

/// The last `span_ns` of samples, in arrival order.
#[derive(Debug, Clone, Default)]
pub struct Window {
    samples: VecDeque<Slot>,
    span_ns: u64,
}

impl Window {
    pub fn new(span_ns: u64) -> Window {
        Window { samples: VecDeque::new(), span_ns }
    }

    pub fn push(&mut self, s: Sample) {
        self.samples.push_back(Slot::pack(s));
        // Bounded even if the clock jumps: never more than a day of one sample per ms.
        while self.samples.len() > 86_400_000 {
            self.samples.pop_front();
        }
    }

    /// Keeps `span_ns` from now on (the samples held stay until the next eviction).
    pub fn set_span(&mut self, span_ns: u64) {
        self.span_ns = span_ns;
    }

    /// Drops samples older than the span before `now`, but for the last
    /// [`crate::stats::JITTER_LEAD`] of them: the jitter of the longest window continues from
    /// those.
    pub fn evict(&mut self, now_ns: u64) {
        let from = now_ns.saturating_sub(self.span_ns);
        let old = self.samples.iter().take_while(|s| s.at_ns < from).count();
        self.samples.drain(..old.saturating_sub(crate::stats::JITTER_LEAD));
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Statistics of the samples within `window_ns` before `now` (at most the span); the
    /// jitter continues from the answered samples held before the window.
    pub fn stats(&self, now_ns: u64, window_ns: u64) -> WindowStats {
        let from = now_ns.saturating_sub(window_ns);
        let mut acc = StatsOf::default();
        let before = self.samples.iter().take_while(|s| s.at_ns < from).filter_map(|s| s.unpack().rtt_ns);
        let n = before.clone().count();
        acc.d.after(before.skip(n.saturating_sub(crate::stats::JITTER_LEAD)));
        for s in self.samples.iter().filter(|s| s.at_ns >= from && s.at_ns <= now_ns) {
            acc.push(s.unpack());
        }
        acc.finish()
    }
}

/// [`WindowStats`] of samples given one at a time, in constant memory (the RTTs go into a
/// histogram): for spans too long to hold, such as a history query over months.
#[derive(Debug, Clone, Default)]
pub struct StatsOf {
    d: DelayStats,
    sent: u64,
    lost: u64,
    tmin: Option<f64>,
}

impl StatsOf {
    /// Continues the jitter from the delays before the first sample (see [`DelayStats::after`]).
    pub fn after(&mut self, prior: impl IntoIterator<Item = u64>) {
        self.d.after(prior);
    }

    pub fn push(&mut self, s: Sample) {
        self.sent += 1;
        if let Some(v) = s.value {
            self.tmin = Some(self.tmin.map_or(v, |m| m.min(v)));
            return;
        }
        match s.rtt_ns {
            Some(r) => self.d.record(r),
            None => self.lost += 1,
        }
    }

    pub fn finish(self) -> WindowStats {
        let (sent, lost) = (self.sent, self.lost);
        WindowStats {
            sent,
            lost,
            loss_ratio: if sent == 0 { 0.0 } else { lost as f64 / sent as f64 },
            rtt: self.d.summary(),
            throughput_min_bps: self.tmin,
        }
    }
}

impl Objective {
    /// `Some(true)` when violated, `Some(false)` when met, `None` without data.
    pub fn violated(&self, w: &WindowStats) -> Option<bool> {
        self.violated_by(w.value(self.metric))
    }

    /// The same for a value computed elsewhere (interface counters).
    pub fn violated_by(&self, v: Option<f64>) -> Option<bool> {
        let v = v?;
        Some(if self.metric.is_floor() { v < self.threshold } else { v > self.threshold })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transition {
    Fired,
    Resolved,
}

/// Alert state of one objective, with hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertState {
    pub firing: bool,
    /// When the current firing began (unix ns), for the webhook's `startsAt`.
    pub since_ns: u64,
    bad: u32,
    good: u32,
    fire_after: u32,
    resolve_after: u32,
}

impl AlertState {
    pub fn new(fire_after: u32, resolve_after: u32) -> AlertState {
        AlertState {
            firing: false,
            since_ns: 0,
            bad: 0,
            good: 0,
            fire_after: fire_after.max(1),
            resolve_after: resolve_after.max(1),
        }
    }

    /// Feeds one evaluation; returns the transition it caused, if any.
    pub fn observe(&mut self, violated: Option<bool>, now_ns: u64) -> Option<Transition> {
        match violated? {
            true => {
                self.bad += 1;
                self.good = 0;
                if !self.firing && self.bad >= self.fire_after {
                    self.firing = true;
                    self.since_ns = now_ns;
                    return Some(Transition::Fired);
                }
            }
            false => {
                self.good += 1;
                self.bad = 0;
                if self.firing && self.good >= self.resolve_after {
                    self.firing = false;
                    return Some(Transition::Resolved);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn rtt(at: u64, ms: u64) -> Sample {
        Sample { at_ns: at, rtt_ns: Some(ms * 1_000_000), value: None }
    }

    #[test]
    fn window_stats_and_objectives() {
        let mut w = Window::new(300 * S);
        for i in 0..100 {
            w.push(rtt(i * S, 10 + i % 2)); // 10 or 11 ms
        }
        for i in 100..110 {
            w.push(Sample { at_ns: i * S, rtt_ns: None, value: None }); // 10 lost
        }
        let st = w.stats(109 * S, 300 * S);
        assert_eq!((st.sent, st.lost), (110, 10));
        assert!((st.loss_ratio - 1.0 / 11.0).abs() < 1e-12);
        let loss = Objective { metric: Metric::Loss, threshold: 0.001, window_ns: 300 * S };
        assert_eq!(loss.violated(&st), Some(true));
        let p99 = Objective { metric: Metric::RttP99, threshold: 50e6, window_ns: 300 * S };
        assert_eq!(p99.violated(&st), Some(false));
        // Only the last 10 s: all lost, no RTT at all.
        let st = w.stats(109 * S, 9 * S);
        assert_eq!((st.sent, st.lost), (10, 10));
        assert_eq!(p99.violated(&st), None);
        // Past the span only the last 64 stay, for the jitter to continue from; no window
        // counts them.
        w.evict(110 * S + 300 * S);
        assert_eq!(w.len(), crate::stats::JITTER_LEAD);
        assert_eq!(w.stats(110 * S + 300 * S, 300 * S).sent, 0);
    }

    /// One probe every 10 s, delays alternating 10 and 20 ms, a 1-minute window: its jitter
    /// continues from the answers before it (about 10 ms), where it restarted at 0 and read
    /// 2.76 ms (5 differences).
    #[test]
    fn a_windows_jitter_continues_from_the_answers_before_it() {
        let mut w = Window::new(60 * S);
        for k in 0..120u64 {
            w.push(rtt(k * 10 * S, if k.is_multiple_of(2) { 10 } else { 20 }));
            w.evict(k * 10 * S);
        }
        let j = w.stats(1190 * S, 60 * S).rtt.unwrap().jitter_rfc3550_ns;
        assert!((j - 1e7).abs() < 0.02e7, "{j}");
    }

    #[test]
    fn slots_round_trip() {
        for s in [
            Sample { at_ns: 1, rtt_ns: Some(7), value: None },
            Sample { at_ns: 2, rtt_ns: None, value: None },
            Sample { at_ns: 3, rtt_ns: None, value: Some(1.5e9) },
        ] {
            assert_eq!(Slot::pack(s).unpack(), s);
        }
        assert_eq!(std::mem::size_of::<Slot>(), 24);
    }

    #[test]
    fn throughput_is_a_floor() {
        let mut w = Window::new(60 * S);
        w.push(Sample { at_ns: S, rtt_ns: None, value: Some(90e6) });
        w.push(Sample { at_ns: 2 * S, rtt_ns: None, value: Some(120e6) });
        let st = w.stats(3 * S, 60 * S);
        assert_eq!((st.sent, st.lost, st.throughput_min_bps), (2, 0, Some(90e6)));
        let o = Objective { metric: Metric::ThroughputMin, threshold: 100e6, window_ns: 60 * S };
        assert_eq!(o.violated(&st), Some(true));
        assert_eq!(Objective { threshold: 80e6, ..o }.violated(&st), Some(false));
        assert_eq!(Objective { metric: Metric::Loss, ..o }.violated(&st), Some(false));
    }

    /// Six runs passed at 90-120 Mbit/s and three failed: nine sent, three lost (a third, not
    /// all), and the failed runs break a floor the passed ones meet.
    #[test]
    fn failed_runs_are_lost_runs_and_zero_throughput() {
        let mut w = Window::new(60 * S);
        for k in 0..6 {
            w.push(Sample { at_ns: k * S, rtt_ns: None, value: Some(90e6 + k as f64 * 6e6) });
        }
        for k in 6..9 {
            w.push(Sample { at_ns: k * S, rtt_ns: None, value: None });
        }
        let st = w.stats(9 * S, 60 * S);
        assert_eq!((st.sent, st.lost, st.throughput_min_bps), (9, 3, Some(90e6)));
        assert!((st.loss_ratio - 1.0 / 3.0).abs() < 1e-12);
        let floor = Objective { metric: Metric::ThroughputMin, threshold: 80e6, window_ns: 60 * S };
        assert_eq!(st.value(Metric::ThroughputMin), Some(0.0));
        assert_eq!(floor.violated(&st), Some(true));
        // Every run failed: still evaluated, and violated.
        let st = w.stats(9 * S, 3 * S);
        assert_eq!((st.sent, st.lost, st.throughput_min_bps), (3, 3, None));
        assert_eq!(floor.violated(&st), Some(true));
        // Only passed runs: met.
        let st = w.stats(5 * S, 60 * S);
        assert_eq!((st.sent, st.lost), (6, 0));
        assert_eq!(floor.violated(&st), Some(false));
    }

    #[test]
    fn hysteresis_fires_once_and_resolves_once() {
        let mut a = AlertState::new(3, 2);
        let seq = [true, true, false, true, true, true, true, true, false, true, false, false, false, false];
        let got: Vec<_> =
            seq.iter().enumerate().filter_map(|(i, &v)| a.observe(Some(v), i as u64).map(|t| (i, t))).collect();
        assert_eq!(got, vec![(5, Transition::Fired), (11, Transition::Resolved)]);
        assert_eq!(a.since_ns, 5);
        assert_eq!(a.observe(None, 20), None, "no data changes nothing");
        assert!(!a.firing);
    }
}
