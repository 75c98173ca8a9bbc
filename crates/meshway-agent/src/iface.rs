//! Interface telemetry: counter snapshots from the kernel (netlink link statistics, speed from
//! sysfs), rates between two snapshots, and counter deltas over an objective window.
//!
//! Definitions (the same in `/metrics`, the history and objectives):
//! - utilization: the busier direction's bits per second over the link speed (`None` when the
//!   driver reports no speed, as virtual interfaces without a set speed do);
//! - error ratio: receive and transmit errors over packets;
//! - drop ratio: receive and transmit drops plus receive misses (NIC buffer overruns) over
//!   packets plus those drops.
//!
//! A counter that goes backwards (the interface was re-created or its driver reset it) counts
//! from zero: the delta is the new value.

use crate::netlink::{self, LinkStats, NetlinkError};
use std::collections::VecDeque;

/// One interface at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub at_ns: u64,
    pub link: LinkStats,
    /// Link speed in bits per second, when the driver reports one.
    pub speed_bps: Option<f64>,
}

/// Does `name` match one of the space- or comma-separated globs in `pattern` (`*` any run,
/// `?` one character)?
pub fn matches(pattern: &str, name: &str) -> bool {
    pattern.split([',', ' ']).filter(|p| !p.is_empty()).any(|p| glob(p.as_bytes(), name.as_bytes()))
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative matcher with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Link speed from sysfs (Mbit/s there); `None` when unknown (-1) or unreadable.
pub fn speed_bps(name: &str) -> Option<f64> {
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    let t = std::fs::read_to_string(format!("/sys/class/net/{name}/speed")).ok()?;
    let mbps: i64 = t.trim().parse().ok()?;
    (mbps > 0).then_some(mbps as f64 * 1e6)
}

/// Snapshots of the interfaces whose names match `pattern`, at `at_ns`.
pub fn snapshot(pattern: &str, at_ns: u64) -> Result<Vec<Snapshot>, NetlinkError> {
    Ok(netlink::links()?
        .into_iter()
        .filter(|l| matches(pattern, &l.name))
        .map(|link| {
            let speed_bps = speed_bps(&link.name);
            Snapshot { at_ns, link, speed_bps }
        })
        .collect())
}

fn delta(new: u64, old: u64) -> u64 {
    if new >= old {
        new - old
    } else {
        new
    }
}

/// What happened between two snapshots of one interface.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    pub secs: f64,
    pub rx_bps: f64,
    pub tx_bps: f64,
    pub rx_pps: f64,
    pub tx_pps: f64,
    pub utilization: Option<f64>,
    pub errors: u64,
    pub drops: u64,
    pub packets: u64,
    pub error_ratio: Option<f64>,
    pub drop_ratio: Option<f64>,
}

impl Rates {
    /// `None` when the two snapshots are not in time order.
    pub fn between(a: &Snapshot, b: &Snapshot) -> Option<Rates> {
        if b.at_ns <= a.at_ns {
            return None;
        }
        let secs = (b.at_ns - a.at_ns) as f64 / 1e9;
        let (x, y) = (&a.link, &b.link);
        let d = |f: fn(&LinkStats) -> u64| delta(f(y), f(x));
        let rx_bps = d(|l| l.rx_bytes) as f64 * 8.0 / secs;
        let tx_bps = d(|l| l.tx_bytes) as f64 * 8.0 / secs;
        let packets = d(|l| l.rx_packets) + d(|l| l.tx_packets);
        let errors = d(|l| l.rx_errors) + d(|l| l.tx_errors);
        let drops = d(|l| l.rx_dropped) + d(|l| l.tx_dropped) + d(|l| l.rx_missed_errors);
        Some(Rates {
            secs,
            rx_bps,
            tx_bps,
            rx_pps: d(|l| l.rx_packets) as f64 / secs,
            tx_pps: d(|l| l.tx_packets) as f64 / secs,
            utilization: b.speed_bps.map(|s| rx_bps.max(tx_bps) / s),
            errors,
            drops,
            packets,
            error_ratio: (packets > 0).then(|| errors as f64 / packets as f64),
            drop_ratio: (packets + drops > 0).then(|| drops as f64 / (packets + drops) as f64),
        })
    }
}

/// The snapshots of one interface within a span: values over a window are deltas between its
/// oldest and newest snapshot inside it.
#[derive(Debug, Clone, Default)]
pub struct CounterWindow {
    snaps: VecDeque<Snapshot>,
    span_ns: u64,
}

impl CounterWindow {
    pub fn new(span_ns: u64) -> CounterWindow {
        CounterWindow { snaps: VecDeque::new(), span_ns }
    }

    /// Keeps `span_ns` from the next push on (a reload that changes an objective's window).
    pub fn set_span(&mut self, span_ns: u64) {
        self.span_ns = span_ns;
    }

    pub fn push(&mut self, s: Snapshot) {
        if self.snaps.back().is_some_and(|b| b.at_ns >= s.at_ns) {
            return;
        }
        self.snaps.push_back(s);
        // Keep one snapshot at or before the span's start so a full window has both ends.
        while self.snaps.len() > 2 && self.snaps[1].at_ns + self.span_ns <= self.snaps.back().map_or(0, |b| b.at_ns) {
            self.snaps.pop_front();
        }
    }

    /// Rates over the last `window_ns` (from the newest snapshot at or before its start, or
    /// the oldest one held); `None` with fewer than two snapshots.
    pub fn over(&self, window_ns: u64) -> Option<Rates> {
        let last = self.snaps.back()?;
        let from = last.at_ns.saturating_sub(window_ns);
        let first = self.snaps.iter().rev().find(|s| s.at_ns <= from).or_else(|| self.snaps.front())?;
        Rates::between(first, last)
    }

    pub fn latest(&self) -> Option<&Snapshot> {
        self.snaps.back()
    }

    pub fn len(&self) -> usize {
        self.snaps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.snaps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn snap(at_s: u64, rx_bytes: u64, tx_bytes: u64, packets: u64, errors: u64, drops: u64) -> Snapshot {
        Snapshot {
            at_ns: at_s * S,
            link: LinkStats {
                name: "eth0".into(),
                rx_bytes,
                tx_bytes,
                rx_packets: packets,
                rx_errors: errors,
                rx_dropped: drops,
                ..Default::default()
            },
            speed_bps: Some(10e9),
        }
    }

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("eth0", "eth0", true),
            ("eth*", "eth12", true),
            ("eth*", "veth0", false),
            ("*eth?", "veth0", true),
            ("*", "lo", true),
            ("e*h*1", "eth1", true),
            ("e*h*1", "eth10", false),
            ("lo, eth*", "eth3", true),
            ("", "eth0", false),
            ("swp?*", "swp12", true),
            ("swp?*", "swp", false),
        ] {
            assert_eq!(matches(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn rates_utilization_ratios_and_counter_resets() {
        let a = snap(10, 0, 0, 0, 0, 0);
        // 2 s, 2.5 GB received (10 Gbit/s: full), 1.25 GB sent; 1e6 packets, 10 errors, 40 drops.
        let b = snap(12, 2_500_000_000, 1_250_000_000, 1_000_000, 10, 40);
        let r = Rates::between(&a, &b).unwrap();
        assert_eq!((r.rx_bps, r.tx_bps, r.rx_pps), (10e9, 5e9, 500_000.0));
        assert_eq!(r.utilization, Some(1.0));
        assert_eq!(r.error_ratio, Some(1e-5));
        assert!((r.drop_ratio.unwrap() - 40.0 / 1_000_040.0).abs() < 1e-15);
        assert_eq!(Rates::between(&b, &a), None, "out of order");
        // The interface was re-created: counters restart, the delta is the new value.
        let c = snap(13, 1_000, 0, 1, 0, 0);
        let r = Rates::between(&b, &c).unwrap();
        assert_eq!((r.rx_bps, r.packets), (8_000.0, 1));
        let mut no_speed = c.clone();
        no_speed.speed_bps = None;
        assert_eq!(Rates::between(&b, &no_speed).unwrap().utilization, None);
    }

    #[test]
    fn a_window_spans_its_length_and_stays_bounded() {
        let mut w = CounterWindow::new(60 * S);
        for t in 0..=600 {
            // 1 Gbit/s for 300 s, then 4 Gbit/s.
            let bytes = if t <= 300 { t * 125_000_000 } else { 300 * 125_000_000 + (t - 300) * 500_000_000 };
            w.push(snap(t, bytes, 0, t * 1000, 0, 0));
        }
        assert!(w.len() <= 62, "{}", w.len());
        let r = w.over(60 * S).unwrap();
        assert_eq!((r.secs, r.rx_bps, r.utilization), (60.0, 4e9, Some(0.4)));
        let r = w.over(10 * S).unwrap();
        assert_eq!(r.secs, 10.0);
        // Longer than what is held: the oldest snapshot held.
        assert_eq!(w.over(3600 * S).unwrap().secs, 60.0);
        let mut one = CounterWindow::new(60 * S);
        one.push(snap(1, 0, 0, 0, 0, 0));
        assert_eq!(one.over(60 * S), None);
        // A longer span (a reload) holds more from then on: 120 s later, 120 s of history.
        w.set_span(300 * S);
        for t in 601..=720 {
            w.push(snap(t, 300 * 125_000_000 + (t - 300) * 500_000_000, 0, t * 1000, 0, 0));
        }
        assert_eq!(w.over(3600 * S).unwrap().secs, 180.0);
    }
}
